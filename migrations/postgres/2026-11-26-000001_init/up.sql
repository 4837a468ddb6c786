-- Accounts registered on this server (tokens minted elsewhere need no row here).
CREATE TABLE users (
    uid BIGSERIAL PRIMARY KEY,
    name TEXT NOT NULL,
    name_lower TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    role TEXT NOT NULL DEFAULT 'user',
    created_at BIGINT NOT NULL
);

-- Rooms created explicitly or by a first join/publish.
CREATE TABLE rooms (
    name TEXT PRIMARY KEY NOT NULL,
    private BOOLEAN NOT NULL DEFAULT FALSE,
    created_by TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

-- Who belongs to a room or a DM: private-room access, `channels` listing, signal peers.
CREATE TABLE memberships (
    channel TEXT NOT NULL,
    user_id TEXT NOT NULL,
    user_name TEXT NOT NULL,
    joined_at BIGINT NOT NULL,
    PRIMARY KEY (channel, user_id)
);
CREATE INDEX memberships_user ON memberships (user_id);

-- Per stored channel: the top seq (gap-free counter) and the history epoch.
CREATE TABLE channels (
    name TEXT PRIMARY KEY NOT NULL,
    seq BIGINT NOT NULL,
    epoch TEXT NOT NULL
);

CREATE TABLE messages (
    channel TEXT NOT NULL,
    seq BIGINT NOT NULL,
    ts BIGINT NOT NULL,
    sender_id TEXT NOT NULL,
    sender_name TEXT NOT NULL,
    client_id TEXT,
    data TEXT NOT NULL,
    edited_ts BIGINT,
    deleted BOOLEAN NOT NULL DEFAULT FALSE,
    PRIMARY KEY (channel, seq)
);
-- A resend with a known client_id must find the original (NULLs never collide).
CREATE UNIQUE INDEX messages_client_id ON messages (channel, sender_id, client_id);

CREATE TABLE read_markers (
    user_id TEXT NOT NULL,
    channel TEXT NOT NULL,
    seq BIGINT NOT NULL,
    PRIMARY KEY (user_id, channel)
);

-- Newest value of last-value channels that survive a restart (loc:).
CREATE TABLE last_values (
    channel TEXT PRIMARY KEY NOT NULL,
    seq BIGINT NOT NULL,
    ts BIGINT NOT NULL,
    sender_id TEXT NOT NULL,
    sender_name TEXT NOT NULL,
    data TEXT NOT NULL
);

-- Sampled location tracks.
CREATE TABLE track_points (
    id BIGSERIAL PRIMARY KEY,
    entity TEXT NOT NULL,
    ts BIGINT NOT NULL,
    lat DOUBLE PRECISION NOT NULL,
    lon DOUBLE PRECISION NOT NULL
);
CREATE INDEX track_points_entity_ts ON track_points (entity, ts);
