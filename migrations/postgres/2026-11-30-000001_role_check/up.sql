-- Roles are a checked column: only the roles the server knows can be stored.
UPDATE users SET role = 'user' WHERE role NOT IN ('user', 'publisher', 'admin');
ALTER TABLE users ADD CONSTRAINT users_role_check CHECK (role IN ('user', 'publisher', 'admin'));
