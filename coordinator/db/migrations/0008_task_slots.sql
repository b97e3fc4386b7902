-- A task's place in its round, named for what it is: `slot` orders the round's tasks (copy c of
-- shard s sits in slot s + c * shards; the held-out evaluation in slot -1), and `shard` and
-- `copy` are stored beside it, so no query or service recomputes them from the slot.
ALTER TABLE tasks RENAME COLUMN shard_idx TO slot;
ALTER TABLE tasks ADD COLUMN shard INTEGER NOT NULL DEFAULT 0;
ALTER TABLE tasks ADD COLUMN copy INTEGER NOT NULL DEFAULT 0;
UPDATE tasks SET
    shard = slot % (SELECT shard_count FROM jobs WHERE jobs.id = tasks.job_id),
    copy = slot / (SELECT shard_count FROM jobs WHERE jobs.id = tasks.job_id)
WHERE slot >= 0;
