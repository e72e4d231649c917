-- The audit log (issue 8, SPEC section 8): one row for every create, change and delete of every
-- resource, every booking transition, and every read of a booking's personal fields or
-- disclosure of a site's address to an officer. Written by the service in the same transaction
-- as what it records. It names fields, never their values, so erasing personal data later
-- leaves it as it was.
CREATE TABLE audit (
    id          bigserial PRIMARY KEY,
    at          timestamptz NOT NULL,
    -- The caller: its key, role and scope (force code or provider id). No key for the service's
    -- own jobs (role 'system') and the command line (role 'cli').
    api_key_id  uuid,
    role        text NOT NULL CHECK (role IN ('admin', 'officer', 'provider', 'system', 'cli')),
    scope       text,
    request_id  text,
    action      text NOT NULL CHECK (action IN (
        'create', 'update', 'delete', 'revoke', 'read', 'erase',
        'hold', 'confirm', 'accept', 'decline', 'cancel', 'check-in', 'check-out', 'no-show',
        'extend', 'expire'
    )),
    object_type text NOT NULL CHECK (object_type IN (
        'force', 'provider', 'api_key', 'site', 'bed', 'block', 'booking'
    )),
    object_id   text NOT NULL,
    -- Changed fields for changes, the personal fields shown for reads: names only.
    fields      text[] NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_object_idx ON audit (object_type, object_id, id);
CREATE INDEX audit_key_idx ON audit (api_key_id, id);
CREATE INDEX audit_at_idx ON audit (at, id);

-- Append-only: UPDATE, DELETE and TRUNCATE fail for every role, the service's own included
-- (a trigger binds the table's owner too). What a trigger cannot stop is DDL by the owner
-- (DISABLE TRIGGER, DROP): a deployment that must rule that out runs migrations as an owner
-- role and the service as a role granted only INSERT and SELECT on audit (README,
-- "Audit log"); a superuser can always get round it (session_replication_role = replica).
CREATE FUNCTION audit_is_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the audit log is append-only: % is not allowed', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$;

CREATE TRIGGER audit_no_update_or_delete
    BEFORE UPDATE OR DELETE ON audit
    FOR EACH ROW EXECUTE FUNCTION audit_is_append_only();
CREATE TRIGGER audit_no_truncate
    BEFORE TRUNCATE ON audit
    FOR EACH STATEMENT EXECUTE FUNCTION audit_is_append_only();

REVOKE UPDATE, DELETE, TRUNCATE ON audit FROM PUBLIC;

-- Event types are a fixed list (service/vocab.py EventType); a site event has no booking.
ALTER TABLE event ADD CONSTRAINT event_type_known CHECK (type IN (
    'booking.held', 'booking.pending', 'booking.confirmed', 'booking.declined',
    'booking.cancelled', 'booking.expired', 'booking.arrived', 'booking.departed',
    'booking.no_show', 'booking.extended', 'site.availability_changed'
));
ALTER TABLE booking_transition ADD CONSTRAINT booking_transition_status_known CHECK (status IN (
    'held', 'pending', 'confirmed', 'arrived', 'departed', 'expired', 'cancelled', 'declined',
    'no_show'
));
CREATE INDEX event_site_idx ON event (site_id, id);
