-- Which stored messages refer to which upload (a `data.url` of `/uploads/<name>`):
-- uploads no message refers to are removed after a grace period. The writer records a
-- reference with its message; the retention task and a delete remove it with it.
CREATE TABLE upload_refs (
    channel TEXT NOT NULL,
    seq BIGINT NOT NULL,
    upload TEXT NOT NULL,
    PRIMARY KEY (channel, seq, upload)
);
CREATE INDEX upload_refs_upload ON upload_refs (upload);
-- The references of messages stored before this table.
INSERT OR IGNORE INTO upload_refs (channel, seq, upload)
    SELECT channel, seq, substr(json_extract(data, '$.url'), 10)
    FROM messages
    WHERE data LIKE '%/uploads/%'
      AND json_valid(data)
      AND json_type(data, '$.url') = 'text'
      AND json_extract(data, '$.url') LIKE '/uploads/_%';
