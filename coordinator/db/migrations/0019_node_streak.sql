-- Adaptive replication: the results a node had agreed in a row since it was last outvoted (its
-- trust; `disagreed` already counts the times it was outvoted).
ALTER TABLE nodes ADD COLUMN streak INTEGER NOT NULL DEFAULT 0;
