-- Node-local datasets and differential privacy. A node declares the datasets it holds (never
-- their content) and who besides its owner may use them; a job on one names it (`dataset`),
-- and each of its training tasks is bound to one node (`target_node`) with the sample weight
-- that node declared (`weight`, capped by the job). `dataset_columns` is the column order the
-- job's tasks see (fixed by its first round). DP jobs record their delta, and each round the
-- epsilon spent so far.
CREATE TABLE node_datasets (
    node_id      TEXT NOT NULL REFERENCES nodes(id) ON DELETE CASCADE,
    name         TEXT NOT NULL,
    format       TEXT NOT NULL,
    columns      TEXT NOT NULL,
    rows         BIGINT NOT NULL,
    description  TEXT NOT NULL,
    PRIMARY KEY (node_id, name)
);
CREATE INDEX node_datasets_name ON node_datasets(name);
CREATE TABLE dataset_grants (
    node_id  TEXT NOT NULL,
    name     TEXT NOT NULL,
    email    TEXT NOT NULL,
    PRIMARY KEY (node_id, name, email),
    FOREIGN KEY (node_id, name) REFERENCES node_datasets(node_id, name) ON DELETE CASCADE
);
ALTER TABLE jobs ADD COLUMN dataset TEXT;
ALTER TABLE jobs ADD COLUMN dataset_columns TEXT;
ALTER TABLE jobs ADD COLUMN dp_delta DOUBLE PRECISION;
ALTER TABLE tasks ADD COLUMN target_node TEXT;
ALTER TABLE tasks ADD COLUMN weight BIGINT;
ALTER TABLE rounds ADD COLUMN epsilon DOUBLE PRECISION;
