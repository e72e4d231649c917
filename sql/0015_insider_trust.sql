-- Trust against an insider (issue 14): what one officer key may take and learn is bounded, and
-- what it tries beyond that is raised to the national coordinators as a security alert.

-- Bookings not yet arrived (held, pending, confirmed) per key and per force are capped at
-- hold time, under the force's advisory lock. Confirmed bookings are counted while their stay
-- has not ended, through this index: an unresolved confirmation long past its end no longer
-- ties up its force, and the walk never grows with history.
CREATE INDEX allocation_confirmed_end_idx ON allocation (upper(period))
    WHERE status = 'confirmed' AND kind = 'booking';

-- A site whose address officers never see through the service (as shelters for people
-- fleeing violence do): the provider gives it by phone once the person is confirmed.
ALTER TABLE site ADD COLUMN address_by_phone_only boolean NOT NULL DEFAULT false;

-- The provider's 24-hour duty phone: what an officer is shown before a site's own address and
-- phone may be disclosed, and instead of them once they may not be.
ALTER TABLE provider ADD COLUMN duty_phone text;

-- Every disclosure of a site's address and phone to an officer key: the first time each
-- booking showed it. The budget counts distinct sites per key and per force over a rolling
-- day; a disclosure whose booking is cancelled soon after is marked "without placement".
-- Names keys, forces, sites and bookings only: nothing about the person.
CREATE TABLE disclosure (
    id                    bigserial PRIMARY KEY,
    at                    timestamptz NOT NULL,
    api_key_id            uuid NOT NULL REFERENCES api_key (id),
    force_code            text NOT NULL REFERENCES force (code),
    site_id               uuid NOT NULL REFERENCES site (id),
    booking_id            uuid NOT NULL REFERENCES booking (id),
    without_placement_at  timestamptz,
    UNIQUE (booking_id, api_key_id)
);
CREATE INDEX disclosure_force_idx ON disclosure (force_code, at);
CREATE INDEX disclosure_key_idx ON disclosure (api_key_id, at);

-- Security alerts for the national coordinators. One row per kind of trouble per key per
-- hour (or per booking, for a disclosure without placement), counting its repeats, so a
-- key hammering a limit raises one alert that grows, not a flood.
CREATE TABLE security_alert (
    id          uuid PRIMARY KEY,
    kind        text NOT NULL CHECK (kind IN (
        'booking_cap', 'hold_cap', 'too_far_ahead', 'disclosure_budget',
        'disclosure_without_placement', 'repeated_refusals'
    )),
    first_at    timestamptz NOT NULL,
    last_at     timestamptz NOT NULL,
    count       integer NOT NULL DEFAULT 1 CHECK (count >= 1),
    api_key_id  uuid REFERENCES api_key (id),
    force_code  text REFERENCES force (code),
    provider_id uuid REFERENCES provider (id),
    site_id     uuid REFERENCES site (id),
    booking_id  uuid REFERENCES booking (id),
    detail      text NOT NULL,
    dedupe      text NOT NULL UNIQUE
);
CREATE INDEX security_alert_paging_idx ON security_alert (first_at, id);
CREATE INDEX security_alert_key_idx ON security_alert (api_key_id, first_at, id);
CREATE INDEX security_alert_force_idx ON security_alert (force_code, first_at, id);

-- A refusal by a limit is audited (in a transaction of its own: the refused one rolled back).
ALTER TABLE audit DROP CONSTRAINT audit_action_check;
ALTER TABLE audit ADD CONSTRAINT audit_action_check CHECK (action IN (
    'create', 'update', 'delete', 'revoke', 'read', 'erase',
    'hold', 'confirm', 'accept', 'decline', 'cancel', 'check-in', 'check-out', 'no-show',
    'extend', 'expire', 'refuse'
));

ALTER TABLE event DROP CONSTRAINT event_type_known;
ALTER TABLE event ADD CONSTRAINT event_type_known CHECK (type IN (
    'booking.held', 'booking.pending', 'booking.confirmed', 'booking.declined',
    'booking.cancelled', 'booking.expired', 'booking.arrived', 'booking.departed',
    'booking.no_show', 'booking.extended', 'site.availability_changed', 'site.capacity_stale',
    'security.alert'
));
ALTER TABLE webhook DROP CONSTRAINT webhook_event_types_check;
ALTER TABLE webhook ADD CONSTRAINT webhook_event_types_check CHECK (
    cardinality(event_types) > 0
    AND event_types <@ ARRAY[
        'booking.held', 'booking.pending', 'booking.confirmed', 'booking.declined',
        'booking.cancelled', 'booking.expired', 'booking.arrived', 'booking.departed',
        'booking.no_show', 'booking.extended', 'site.availability_changed', 'site.capacity_stale',
        'security.alert'
    ]
);
