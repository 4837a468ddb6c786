DROP INDEX messages_client_id;
CREATE UNIQUE INDEX messages_client_id ON messages (channel, sender_id, client_id);
