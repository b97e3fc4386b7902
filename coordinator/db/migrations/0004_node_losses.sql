-- Node losses (a lease that ran out, a node reporting its own failure) are counted apart from
-- failures of the user's code, under their own cap: a flaky fleet does not use up a job's tries.
ALTER TABLE tasks ADD COLUMN losses INTEGER NOT NULL DEFAULT 0;
ALTER TABLE tasks ADD COLUMN max_losses INTEGER NOT NULL DEFAULT 5;
