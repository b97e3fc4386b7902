-- The fleet over time, for the dashboard's charts: one row per sampling period (its start,
-- epoch ms), written by whichever replica samples it first; kept for a day.
CREATE TABLE fleet_samples (
    at BIGINT PRIMARY KEY,
    nodes_online INTEGER NOT NULL,
    tasks_running INTEGER NOT NULL,
    tasks_queued INTEGER NOT NULL,
    tasks_done INTEGER NOT NULL
);
