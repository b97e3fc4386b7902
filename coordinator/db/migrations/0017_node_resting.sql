-- Why an online node takes no task now, as it said in its heartbeat (paused by its owner,
-- outside its hours, its machine busy); '' when it may work. Shown as the status `resting`.
ALTER TABLE nodes ADD COLUMN resting TEXT NOT NULL DEFAULT '';
