-- Held-out evaluation: a job may carry an evaluation script and test data; after each merge an
-- `evaluate` task runs the script on the round's model, and the round keeps its metrics.
ALTER TABLE jobs ADD COLUMN eval_code_sha TEXT;
ALTER TABLE jobs ADD COLUMN test_data_sha TEXT;
ALTER TABLE jobs ADD COLUMN test_data_name TEXT;
ALTER TABLE tasks ADD COLUMN kind TEXT NOT NULL DEFAULT 'train';
ALTER TABLE rounds ADD COLUMN held_out TEXT;
