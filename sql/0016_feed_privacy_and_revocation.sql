-- What a feed reader sees of ids and cursors carries nothing about other scopes (issue 14
-- item 8), and a revoked key's parked long polls end at once (item 4).

-- Events keep their bigserial id for feed order, (tx, id), and show a random one: with one
-- global sequence an officer counted another force's events from the gaps between its own.
-- The public id is the webhook-id receivers de-duplicate by, so it is stored, never derived.
ALTER TABLE event ADD COLUMN public_id uuid NOT NULL DEFAULT gen_random_uuid();
ALTER TABLE event ADD CONSTRAINT event_public_id_key UNIQUE (public_id);

-- Delivery rows are numbered by one global sequence too (every subscription's attempts).
ALTER TABLE webhook_delivery ADD COLUMN public_id uuid NOT NULL DEFAULT gen_random_uuid();

-- The key that seals cursors (AES-GCM, service/paging.py): the feed's cursors hold the
-- server's transaction ids. One row, made here from the server's strong random source
-- (gen_random_uuid: 122 random bits each), shared by every replica through the database,
-- so no setting has to be agreed between them.
CREATE TABLE cursor_key (
    id     boolean PRIMARY KEY DEFAULT true CHECK (id),
    secret bytea NOT NULL CHECK (length(secret) = 32)
);
INSERT INTO cursor_key (secret)
VALUES (uuid_send(gen_random_uuid()) || uuid_send(gen_random_uuid()));

-- Revoking a key tells every replica's event listener at commit, whichever path revoked it
-- (the API, `pos api-key revoke`), so the key's parked long polls end at once.
CREATE FUNCTION api_key_revoked_notify() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('pos_key_revoked', NEW.id::text);
    RETURN NULL;
END
$$;
CREATE TRIGGER api_key_revoked AFTER UPDATE OF revoked_at ON api_key
    FOR EACH ROW WHEN (OLD.revoked_at IS NULL AND NEW.revoked_at IS NOT NULL)
    EXECUTE FUNCTION api_key_revoked_notify();
