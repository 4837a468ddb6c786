ALTER TABLE users DROP CONSTRAINT users_role_check;
