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
-- The references of messages stored before this table (read off the JSON text: a cast
-- to jsonb would fail on text it refuses, such as \u0000).
INSERT INTO upload_refs (channel, seq, upload)
    SELECT channel, seq, substring(data from '"url"\s*:\s*"/uploads/([0-9a-z.]+)"')
    FROM messages
    WHERE data LIKE '%/uploads/%'
      AND substring(data from '"url"\s*:\s*"/uploads/([0-9a-z.]+)"') IS NOT NULL
ON CONFLICT DO NOTHING;
