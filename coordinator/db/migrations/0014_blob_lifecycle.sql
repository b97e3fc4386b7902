-- Storage that does not grow for ever: a blob is kept while a row still needs it (a job's code
-- and test data, a round's model, a kept update, a final model); the sweeper deletes the rest.
-- `created_at` becomes "last written": writing the same content again renews it, so a blob
-- that is being written again is never swept. These indexes make "is it needed?" cheap.
CREATE INDEX tasks_result_sha ON tasks(result_sha);
CREATE INDEX rounds_output_sha ON rounds(output_sha);
CREATE INDEX rounds_input_sha ON rounds(input_sha);
CREATE INDEX shards_blob_sha ON shards(blob_sha);
CREATE INDEX blobs_created_at ON blobs(created_at);
ALTER TABLE jobs ADD COLUMN keep_updates INTEGER NOT NULL DEFAULT 0;
