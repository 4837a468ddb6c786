-- Only messages with a client_id need the dedupe index (NULLs never collide): every
-- message without one added an entry to it, a page written at a random place.
DROP INDEX messages_client_id;
CREATE UNIQUE INDEX messages_client_id ON messages (channel, sender_id, client_id)
    WHERE client_id IS NOT NULL;
