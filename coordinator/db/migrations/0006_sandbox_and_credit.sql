-- The sandbox level a job asks of its nodes: 0 none, 1 weak, 2 strong (schemas.agent.SANDBOX_LEVELS),
-- matched at claim against the level the node measured in its start-up self-test.
ALTER TABLE jobs ADD COLUMN min_sandbox INTEGER NOT NULL DEFAULT 0;
-- Credit is what the coordinator measured (lease start to completion, capped by the task timeout
-- and the node's claim), kept per task so a replicated copy is credited only once its vote is in.
ALTER TABLE tasks ADD COLUMN compute_ms INTEGER NOT NULL DEFAULT 0;
