-- What a node sent for a task: the bytes of its upload (a job's traffic is their sum), and, when
-- that upload was a compressed update the coordinator decoded, its hash (`result_sha` is then
-- the decoded model; a retried completion may name either).
ALTER TABLE tasks ADD COLUMN upload_bytes INTEGER;
ALTER TABLE tasks ADD COLUMN upload_sha TEXT;
