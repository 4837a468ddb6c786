DROP TABLE mutes;
DROP TABLE audit_log;
DROP TABLE revocations;
DROP TABLE bans;
