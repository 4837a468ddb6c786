-- Who blocked whom: a blocked user cannot signal (ring) the one who blocked them.
CREATE TABLE blocks (
    user_id TEXT NOT NULL,
    blocked_id TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (user_id, blocked_id)
);
