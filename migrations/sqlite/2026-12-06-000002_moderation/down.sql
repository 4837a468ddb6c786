ALTER TABLE rooms DROP COLUMN archived;
DROP TABLE mutes;
DROP TABLE audit_log;
DROP TABLE revocations;
DROP TABLE bans;
