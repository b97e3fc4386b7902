-- Redundant computing. A job with `replicas` k > 1 trains each shard s in k copies, in task
-- slots s, s + shard_count, s + 2 * shard_count, ... (`tasks.shard_idx` holds the slot; the
-- shard is slot % shard_count). `verdict` records whether a copy agreed with the majority of
-- its shard; nodes keep count of their agreements and disagreements (their reputation).
ALTER TABLE jobs ADD COLUMN replicas INTEGER NOT NULL DEFAULT 1;
ALTER TABLE jobs ADD COLUMN shard_count INTEGER NOT NULL DEFAULT 1;
UPDATE jobs SET shard_count = (SELECT count(*) FROM shards s WHERE s.job_id = jobs.id);
ALTER TABLE tasks ADD COLUMN verdict TEXT;
ALTER TABLE nodes ADD COLUMN agreed INTEGER NOT NULL DEFAULT 0;
ALTER TABLE nodes ADD COLUMN disagreed INTEGER NOT NULL DEFAULT 0;
