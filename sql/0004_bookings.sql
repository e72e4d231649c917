-- Bookings: the person's placement riding on an allocation, its history, the outbox of
-- events, and the log of availability searches (for unmet-demand reports).

CREATE TABLE booking (
    id              uuid PRIMARY KEY REFERENCES allocation (id),
    site_id         uuid NOT NULL REFERENCES site (id),
    force_code      text NOT NULL REFERENCES force (code),
    gender          text NOT NULL CHECK (gender IN ('female', 'male', 'non_binary')),
    dependants      integer NOT NULL DEFAULT 0 CHECK (dependants BETWEEN 0 AND 20),
    wheelchair      boolean NOT NULL DEFAULT false,
    language        text CHECK (language ~ '^[a-z]{2}$'),
    custody_suite   text NOT NULL,
    -- Personal fields: erased (set NULL) once the retention period after the stay has passed.
    person_ref      text,
    officer_collar  text,
    notes           text,
    personal_erased_at timestamptz,
    checked_in_at   timestamptz,
    checked_out_at  timestamptz,
    created_by      uuid REFERENCES api_key (id),
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX booking_force_idx ON booking (force_code, created_at, id);
CREATE INDEX booking_site_idx ON booking (site_id, created_at, id);
CREATE INDEX booking_paging_idx ON booking (created_at, id);

-- Who did what to a booking (hold, confirm, ..., extend, expire), the state it left it in,
-- when and why. Append-only by convention here; the
-- audit log proper (a later migration) is enforced by the database.
CREATE TABLE booking_transition (
    id          bigserial PRIMARY KEY,
    booking_id  uuid NOT NULL REFERENCES booking (id),
    action      text NOT NULL,
    status      text NOT NULL,
    at          timestamptz NOT NULL,
    actor       text NOT NULL,
    api_key_id  uuid REFERENCES api_key (id),
    reason      text
);
CREATE INDEX booking_transition_booking_idx ON booking_transition (booking_id, id);

-- The outbox: written in the same transaction as the change it reports, so an event exists
-- if and only if its change committed. `tx` lets a reader wait until every earlier
-- transaction has finished before reading past an id.
CREATE TABLE event (
    id           bigserial PRIMARY KEY,
    type         text NOT NULL,
    booking_id   uuid REFERENCES booking (id),
    site_id      uuid REFERENCES site (id),
    force_code   text REFERENCES force (code),
    provider_id  uuid REFERENCES provider (id),
    data         jsonb NOT NULL,
    occurred_at  timestamptz NOT NULL,
    tx           xid8 NOT NULL DEFAULT pg_current_xact_id()
);
CREATE INDEX event_booking_idx ON event (booking_id);

-- One row per availability search: the needs and what was found, never the person, and never
-- the searched points themselves (the exclusion point is where someone was exploited).
CREATE TABLE search (
    id           bigserial PRIMARY KEY,
    at           timestamptz NOT NULL,
    api_key_id   uuid REFERENCES api_key (id),
    role         text NOT NULL,
    force_code   text REFERENCES force (code),
    window_start timestamptz NOT NULL,
    window_end   timestamptz NOT NULL,
    gender       text,
    dependants   integer NOT NULL,
    wheelchair   boolean NOT NULL,
    language     text,
    near_given   boolean NOT NULL,
    max_km       double precision,
    avoid_km     double precision,
    sites_found  integer NOT NULL,
    beds_found   integer NOT NULL
);
CREATE INDEX search_at_idx ON search (at);

-- The state a caller sees: a lapsed hold or pending request is expired from its deadline
-- on, even before the expiry job has written it down.
CREATE FUNCTION allocation_status(
    status text, hold_expires_at timestamptz, respond_by timestamptz, at timestamptz
) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN CASE
    WHEN status = 'held' AND hold_expires_at <= at THEN 'expired'
    WHEN status = 'pending' AND respond_by <= at THEN 'expired'
    ELSE status
END;
