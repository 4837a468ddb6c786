-- Roles are a checked column: only the roles the server knows can be stored.
-- SQLite cannot add a constraint to a table: rebuild it (uids are kept).
CREATE TABLE users_new (
    uid INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    name TEXT NOT NULL,
    name_lower TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    role TEXT NOT NULL DEFAULT 'user' CHECK (role IN ('user', 'publisher', 'admin')),
    created_at BIGINT NOT NULL
);
INSERT INTO users_new (uid, name, name_lower, password_hash, role, created_at)
    SELECT uid, name, name_lower, password_hash,
           CASE WHEN role IN ('user', 'publisher', 'admin') THEN role ELSE 'user' END,
           created_at
    FROM users;
DROP TABLE users;
ALTER TABLE users_new RENAME TO users;
