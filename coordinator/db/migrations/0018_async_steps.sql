-- Asynchronous jobs (FedBuff): the server step that merged a task's update. NULL on a succeeded
-- training task of an async job: the update waits in the job's buffer. Taken in the same
-- transaction that marks its step aggregating, so a restart loses no accepted update.
ALTER TABLE tasks ADD COLUMN merged_into INTEGER;
CREATE INDEX tasks_buffer ON tasks(job_id, merged_into);
