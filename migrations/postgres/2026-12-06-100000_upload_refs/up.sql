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
-- The references (`url`, and a video's `poster`) of messages stored before this table
-- (read off the JSON text: a cast to jsonb would fail on text it refuses, such as
-- \u0000).
INSERT INTO upload_refs (channel, seq, upload)
    SELECT channel, seq, upload FROM (
        SELECT m.channel, m.seq,
               substring(m.data from '"' || f.field || '"\s*:\s*"/uploads/([0-9a-z.]+)"') AS upload
        FROM messages m, (VALUES ('url'), ('poster')) AS f(field)
        WHERE m.data LIKE '%/uploads/%'
    ) found
    WHERE upload IS NOT NULL
ON CONFLICT DO NOTHING;
