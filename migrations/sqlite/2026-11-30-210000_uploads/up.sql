-- Stored uploads and who stored them (per-user quota; later, removing unused files).
CREATE TABLE uploads (
    name TEXT PRIMARY KEY NOT NULL,
    user_id TEXT NOT NULL,
    size BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX uploads_user ON uploads (user_id);
