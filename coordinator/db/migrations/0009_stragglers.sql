-- Straggler rules, copied from the job's config into columns that claims and the round
-- sweeper filter on: backup copies after `backup_after` x the round's median task time (NULL:
-- no backups), and rounds that close at `min_fraction` of their shards once `round_deadline_ms`
-- has passed (NULL: wait for every shard).
ALTER TABLE jobs ADD COLUMN backup_after DOUBLE PRECISION;
ALTER TABLE jobs ADD COLUMN min_fraction DOUBLE PRECISION NOT NULL DEFAULT 1;
ALTER TABLE jobs ADD COLUMN round_deadline_ms INTEGER;
