-- Enrolment by a scoped token: single-use or short-lived, good only for registering nodes for
-- its owner (never an API key in a daemon's argv or config).
CREATE TABLE enrolment_tokens (
    token_hash  TEXT PRIMARY KEY,
    owner_id    BIGINT NOT NULL REFERENCES users(id),
    prefix      TEXT NOT NULL,
    uses_left   INTEGER NOT NULL,
    expires_at  BIGINT NOT NULL,
    created_at  BIGINT NOT NULL
);
CREATE INDEX enrolment_tokens_owner ON enrolment_tokens(owner_id);
