-- Placement needs as columns (claims filter on them on both engines), and the aggregation lease:
-- the coordinator replica merging a round holds it until `aggregator_expires_at`, renewing it.
ALTER TABLE jobs ADD COLUMN require_docker INTEGER NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN require_gpu INTEGER NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN min_cpus INTEGER NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN min_memory_mb INTEGER NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN arch TEXT;
ALTER TABLE rounds ADD COLUMN aggregator TEXT;
ALTER TABLE rounds ADD COLUMN aggregator_expires_at INTEGER;
