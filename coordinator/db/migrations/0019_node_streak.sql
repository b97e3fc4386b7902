-- Adaptive replication: the results a node had agreed in a row since it was last outvoted (its
-- trust; `disagreed` already counts the times it was outvoted).
ALTER TABLE nodes ADD COLUMN streak INTEGER NOT NULL DEFAULT 0;
-- A node outvoted since it was last trusted: it takes a task of a replicated job only once the
-- task has waited `suspect_defer_s` in the queue, so that trusted nodes pick first.
ALTER TABLE nodes ADD COLUMN suspect INTEGER NOT NULL DEFAULT 0;
