-- Checkpoints: an ended job keeps the model of its last `keep_rounds` merged rounds (at least
-- the last one, so a cancelled or failed job still has a model to download).
ALTER TABLE jobs ADD COLUMN keep_rounds INTEGER NOT NULL DEFAULT 1;
