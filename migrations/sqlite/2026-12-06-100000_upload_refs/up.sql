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
-- The references (`url`, and a video's `poster`) of messages stored before this table.
INSERT OR IGNORE INTO upload_refs (channel, seq, upload)
    SELECT m.channel, m.seq, substr(json_extract(m.data, f.path), 10)
    FROM messages m, (SELECT '$.url' AS path UNION ALL SELECT '$.poster') f
    WHERE m.data LIKE '%/uploads/%'
      AND json_valid(m.data)
      AND json_type(m.data, f.path) = 'text'
      AND json_extract(m.data, f.path) LIKE '/uploads/_%';
