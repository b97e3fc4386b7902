-- Running a coordinator for months: users can be disabled, a user may hold several named API
-- keys (listed by prefix and last use, revoked one by one), nodes can be banned or removed,
-- and what admins do is recorded.
ALTER TABLE users ADD COLUMN disabled INTEGER NOT NULL DEFAULT 0;
ALTER TABLE api_keys ADD COLUMN name TEXT NOT NULL DEFAULT 'first key';
ALTER TABLE api_keys ADD COLUMN prefix TEXT NOT NULL DEFAULT '';
ALTER TABLE api_keys ADD COLUMN last_used_at BIGINT;
ALTER TABLE api_keys ADD COLUMN revoked_at BIGINT;
ALTER TABLE nodes ADD COLUMN banned INTEGER NOT NULL DEFAULT 0;
ALTER TABLE nodes ADD COLUMN removed INTEGER NOT NULL DEFAULT 0;
CREATE TABLE audit_events (
    id       INTEGER PRIMARY KEY AUTOINCREMENT,
    at       BIGINT NOT NULL,
    actor    TEXT NOT NULL,
    action   TEXT NOT NULL,
    target   TEXT NOT NULL,
    detail   TEXT NOT NULL DEFAULT ''
);
CREATE INDEX audit_events_at ON audit_events(at);
