-- Grid-X schema, version 1. Times are integer epoch milliseconds.
CREATE TABLE users (
    id          INTEGER PRIMARY KEY,
    email       TEXT NOT NULL UNIQUE,
    role        TEXT NOT NULL CHECK (role IN ('admin', 'user')),
    created_at  INTEGER NOT NULL
);

CREATE TABLE api_keys (
    id          INTEGER PRIMARY KEY,
    user_id     INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    key_hash    TEXT NOT NULL UNIQUE,
    created_at  INTEGER NOT NULL
);

CREATE TABLE nodes (
    id            TEXT PRIMARY KEY,
    owner_id      INTEGER NOT NULL REFERENCES users(id),
    name          TEXT NOT NULL,
    token_hash    TEXT NOT NULL UNIQUE,
    capabilities  TEXT NOT NULL,
    draining      INTEGER NOT NULL DEFAULT 0,
    last_seen     INTEGER NOT NULL,
    tasks_done    INTEGER NOT NULL DEFAULT 0,
    compute_ms    INTEGER NOT NULL DEFAULT 0,
    created_at    INTEGER NOT NULL
);

CREATE TABLE blobs (
    sha256       TEXT PRIMARY KEY,
    size         INTEGER NOT NULL,
    storage_key  TEXT NOT NULL,
    created_at   INTEGER NOT NULL
);

CREATE TABLE jobs (
    id                TEXT PRIMARY KEY,
    owner_id          INTEGER NOT NULL REFERENCES users(id),
    name              TEXT NOT NULL,
    status            TEXT NOT NULL CHECK (status IN
                        ('queued', 'running', 'aggregating', 'succeeded', 'failed', 'cancelled')),
    config            TEXT NOT NULL,
    code_sha          TEXT NOT NULL REFERENCES blobs(sha256),
    requirements_sha  TEXT REFERENCES blobs(sha256),
    data_sha          TEXT REFERENCES blobs(sha256),
    data_name         TEXT,
    current_round     INTEGER NOT NULL DEFAULT 0,
    final_pth_sha     TEXT REFERENCES blobs(sha256),
    final_st_sha      TEXT REFERENCES blobs(sha256),
    error             TEXT,
    created_at        INTEGER NOT NULL,
    updated_at        INTEGER NOT NULL
);
CREATE INDEX jobs_owner ON jobs(owner_id, created_at);
CREATE INDEX jobs_status ON jobs(status);

CREATE TABLE shards (
    job_id    TEXT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
    idx       INTEGER NOT NULL,
    blob_sha  TEXT REFERENCES blobs(sha256),
    rows      INTEGER NOT NULL,
    PRIMARY KEY (job_id, idx)
);

CREATE TABLE rounds (
    job_id          TEXT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
    idx             INTEGER NOT NULL,
    status          TEXT NOT NULL CHECK (status IN
                      ('running', 'aggregating', 'done', 'failed', 'cancelled')),
    input_sha       TEXT REFERENCES blobs(sha256),
    output_sha      TEXT REFERENCES blobs(sha256),
    signature       TEXT,
    metrics         TEXT,
    started_at      INTEGER NOT NULL,
    finished_at     INTEGER,
    PRIMARY KEY (job_id, idx)
);
CREATE INDEX rounds_status ON rounds(status);

CREATE TABLE tasks (
    id                TEXT PRIMARY KEY,
    job_id            TEXT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
    round_idx         INTEGER NOT NULL,
    shard_idx         INTEGER NOT NULL,
    status            TEXT NOT NULL CHECK (status IN
                        ('queued', 'leased', 'succeeded', 'failed', 'cancelled')),
    node_id           TEXT REFERENCES nodes(id),
    lease_token       TEXT,
    lease_expires_at  INTEGER,
    attempts          INTEGER NOT NULL DEFAULT 0,
    max_attempts      INTEGER NOT NULL,
    result_sha        TEXT REFERENCES blobs(sha256),
    metrics           TEXT,
    error_code        TEXT,
    error             TEXT,
    created_at        INTEGER NOT NULL,
    updated_at        INTEGER NOT NULL,
    UNIQUE (job_id, round_idx, shard_idx)
);
CREATE INDEX tasks_queue ON tasks(status, created_at);
CREATE INDEX tasks_leases ON tasks(status, lease_expires_at);
CREATE INDEX tasks_node ON tasks(node_id, status);

CREATE TABLE attempts (
    task_id      TEXT NOT NULL REFERENCES tasks(id) ON DELETE CASCADE,
    attempt      INTEGER NOT NULL,
    node_id      TEXT NOT NULL REFERENCES nodes(id),
    started_at   INTEGER NOT NULL,
    finished_at  INTEGER,
    outcome      TEXT,
    error_code   TEXT,
    error        TEXT,
    stderr_tail  TEXT,
    PRIMARY KEY (task_id, attempt)
);

CREATE TABLE events (
    id       INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id   TEXT,
    kind     TEXT NOT NULL,
    data     TEXT NOT NULL,
    at       INTEGER NOT NULL
);
CREATE INDEX events_job ON events(job_id, id);
