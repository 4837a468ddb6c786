CREATE TABLE users_old (
    uid INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    name TEXT NOT NULL,
    name_lower TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    role TEXT NOT NULL DEFAULT 'user',
    created_at BIGINT NOT NULL
);
INSERT INTO users_old SELECT uid, name, name_lower, password_hash, role, created_at FROM users;
DROP TABLE users;
ALTER TABLE users_old RENAME TO users;
