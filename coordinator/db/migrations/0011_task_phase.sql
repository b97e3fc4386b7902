-- What a leased task's node says it is doing now (downloading its inputs, preparing its
-- environment, running, uploading) and in words ("downloading 2 packages: 1.2 GB / 3.0 GB"),
-- written with the heartbeats that renew its lease and cleared when it is claimed again.
ALTER TABLE tasks ADD COLUMN phase TEXT;
ALTER TABLE tasks ADD COLUMN phase_detail TEXT;
