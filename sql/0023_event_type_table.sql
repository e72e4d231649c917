-- Event types in one place (issue 16 item 3). Each new type used to need a migration that
-- rewrote two CHECK lists (event.type and webhook.event_types, sql/0009, 0012, 0015); both now
-- read this table, so a new type is one row here beside its name in service/vocab.py
-- (EventType), and tests/integration/test_vocab_sql.py holds the two equal.
CREATE TABLE event_type (
    name text PRIMARY KEY
);
INSERT INTO event_type (name) VALUES
    ('booking.held'),
    ('booking.pending'),
    ('booking.confirmed'),
    ('booking.declined'),
    ('booking.cancelled'),
    ('booking.expired'),
    ('booking.arrived'),
    ('booking.departed'),
    ('booking.no_show'),
    ('booking.extended'),
    ('site.availability_changed'),
    ('site.capacity_stale'),
    ('security.alert');

-- An event's type is a known one.
ALTER TABLE event DROP CONSTRAINT event_type_known;
ALTER TABLE event ADD CONSTRAINT event_type_known FOREIGN KEY (type) REFERENCES event_type (name);

-- A subscription names known types only. A foreign key cannot reach into an array: a trigger
-- checks each element, and refuses as the CHECK did (check_violation, under its name).
ALTER TABLE webhook DROP CONSTRAINT webhook_event_types_check;
ALTER TABLE webhook ADD CONSTRAINT webhook_event_types_check CHECK (cardinality(event_types) > 0);

CREATE FUNCTION webhook_event_types_known() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (
        SELECT 1 FROM unnest(NEW.event_types) AS t (name)
        WHERE NOT EXISTS (SELECT 1 FROM event_type e WHERE e.name = t.name)
    ) THEN
        RAISE EXCEPTION 'webhook event_types % names a type that is not in event_type',
            NEW.event_types
            USING ERRCODE = 'check_violation', CONSTRAINT = 'webhook_event_types_known',
                  TABLE = 'webhook', COLUMN = 'event_types';
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER webhook_event_types_known BEFORE INSERT OR UPDATE OF event_types ON webhook
    FOR EACH ROW EXECUTE FUNCTION webhook_event_types_known();
