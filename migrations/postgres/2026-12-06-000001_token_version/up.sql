-- Logout and a password change bump the account's token version; tokens issued under
-- an older version are refused.
ALTER TABLE users ADD COLUMN token_version INTEGER NOT NULL DEFAULT 0;
