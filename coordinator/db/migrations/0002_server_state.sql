-- Server optimizer state (FedAdam/FedYogi/FedAdagrad moments) written by each round's merge.
ALTER TABLE rounds ADD COLUMN state_sha TEXT REFERENCES blobs(sha256);
