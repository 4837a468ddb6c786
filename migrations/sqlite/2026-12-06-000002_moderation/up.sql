-- Banned users (by id: users of an outside identity provider can be banned too).
CREATE TABLE bans (
    user_id TEXT PRIMARY KEY NOT NULL,
    reason TEXT NOT NULL,
    banned_by TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
-- What every node applies to its connections and token checks, in order (each node
-- polls it): kind 'revoke' (tokens older than version), 'ban', 'unban', 'unmember'
-- (removed from the members of channel).
CREATE TABLE revocations (
    id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    user_id TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('revoke', 'ban', 'unban', 'unmember')),
    version INTEGER NOT NULL,
    channel TEXT NOT NULL DEFAULT '',
    created_at BIGINT NOT NULL
);
-- Every moderation action: who did what to whom, when and why (readable by admins).
CREATE TABLE audit_log (
    id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    at BIGINT NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    reason TEXT NOT NULL
);
CREATE INDEX audit_log_at ON audit_log (at);
-- Users muted in a room until a time: their publishes there are refused.
CREATE TABLE mutes (
    channel TEXT NOT NULL,
    user_id TEXT NOT NULL,
    until_ms BIGINT NOT NULL,
    reason TEXT NOT NULL,
    muted_by TEXT NOT NULL,
    PRIMARY KEY (channel, user_id)
);
-- An archived room is read-only: its history stays, publishes are refused.
ALTER TABLE rooms ADD COLUMN archived BOOLEAN NOT NULL DEFAULT FALSE;
