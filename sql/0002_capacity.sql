-- Sites, beds and the allocation ledger: bookings and blocks share one no-overlap rule.

CREATE EXTENSION IF NOT EXISTS btree_gist;

CREATE TABLE site (
    id                  uuid PRIMARY KEY,
    provider_id         uuid NOT NULL REFERENCES provider (id),
    name                text NOT NULL,
    address             text NOT NULL,
    area                text NOT NULL,
    lat                 double precision NOT NULL CHECK (lat BETWEEN -90 AND 90),
    lon                 double precision NOT NULL CHECK (lon BETWEEN -180 AND 180),
    genders_accepted    text[] NOT NULL CHECK (
        cardinality(genders_accepted) > 0
        AND genders_accepted <@ ARRAY['female', 'male', 'non_binary']
    ),
    languages           text[] NOT NULL DEFAULT '{}',
    interpreter_on_call boolean NOT NULL DEFAULT false,
    booking_mode        text NOT NULL CHECK (booking_mode IN ('instant', 'request')),
    max_stay_hours      integer NOT NULL DEFAULT 72 CHECK (max_stay_hours BETWEEN 1 AND 720),
    status              text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'paused', 'closed')),
    phone               text NOT NULL,
    version             integer NOT NULL DEFAULT 1,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX site_provider_idx ON site (provider_id, created_at, id);
CREATE INDEX site_paging_idx ON site (created_at, id);

CREATE TABLE bed (
    id                    uuid PRIMARY KEY,
    site_id               uuid NOT NULL REFERENCES site (id),
    label                 text NOT NULL CHECK (length(label) BETWEEN 1 AND 100),
    room_type             text NOT NULL CHECK (room_type IN ('single', 'shared', 'family')),
    wheelchair_accessible boolean NOT NULL DEFAULT false,
    max_dependants        integer NOT NULL DEFAULT 0 CHECK (max_dependants BETWEEN 0 AND 20),
    in_service            boolean NOT NULL DEFAULT true,
    version               integer NOT NULL DEFAULT 1,
    -- Beds are retired, not deleted, so past bookings keep pointing at a real row.
    removed_at            timestamptz,
    created_at            timestamptz NOT NULL DEFAULT now(),
    updated_at            timestamptz NOT NULL DEFAULT now(),
    UNIQUE (site_id, id)
);
CREATE UNIQUE INDEX bed_label_uq ON bed (site_id, lower(label)) WHERE removed_at IS NULL;
CREATE INDEX bed_paging_idx ON bed (site_id, created_at, id);

-- One row per claim on a bed over [start, end): a booking in any state, or a provider's block.
-- The exclusion constraint is the invariant of the whole service: two live claims never
-- overlap on one bed, whichever replica or code path tries.
CREATE TABLE allocation (
    id              uuid PRIMARY KEY,
    site_id         uuid NOT NULL,
    bed_id          uuid NOT NULL,
    kind            text NOT NULL CHECK (kind IN ('booking', 'block')),
    status          text NOT NULL CHECK (status IN (
        'blocked', 'held', 'pending', 'confirmed', 'arrived',
        'departed', 'expired', 'cancelled', 'declined', 'no_show'
    )),
    period          tstzrange NOT NULL CHECK (
        NOT isempty(period) AND NOT lower_inf(period) AND NOT upper_inf(period)
        AND lower_inc(period) AND NOT upper_inc(period)
    ),
    hold_expires_at timestamptz,
    respond_by      timestamptz,
    reason          text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    FOREIGN KEY (site_id, bed_id) REFERENCES bed (site_id, id),
    CONSTRAINT allocation_kind_status CHECK ((kind = 'block') = (status = 'blocked')),
    CONSTRAINT allocation_hold_deadline CHECK (status <> 'held' OR hold_expires_at IS NOT NULL),
    CONSTRAINT allocation_pending_deadline CHECK (status <> 'pending' OR respond_by IS NOT NULL),
    CONSTRAINT allocation_no_overlap EXCLUDE USING gist (bed_id WITH =, period WITH &&)
        WHERE (status IN ('blocked', 'held', 'pending', 'confirmed', 'arrived'))
);
CREATE INDEX allocation_site_idx ON allocation (site_id, created_at, id);
CREATE INDEX allocation_hold_due_idx ON allocation (hold_expires_at) WHERE status = 'held';
CREATE INDEX allocation_pending_due_idx ON allocation (respond_by) WHERE status = 'pending';

-- Whether a claim keeps its bed at instant `at`: holds and pending requests past their
-- deadline stop counting at once, before the expiry job has written them off.
CREATE FUNCTION allocation_is_live(
    status text, hold_expires_at timestamptz, respond_by timestamptz, at timestamptz
) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN CASE status
    WHEN 'held' THEN hold_expires_at > at
    WHEN 'pending' THEN respond_by > at
    ELSE status IN ('blocked', 'confirmed', 'arrived')
END;

-- Great-circle distance in km (haversine, mean Earth radius).
CREATE FUNCTION great_circle_km(
    lat1 double precision, lon1 double precision, lat2 double precision, lon2 double precision
) RETURNS double precision
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
RETURN 2 * 6371.0088 * asin(least(1.0, sqrt(
    power(sin(radians(lat2 - lat1) / 2), 2)
    + cos(radians(lat1)) * cos(radians(lat2)) * power(sin(radians(lon2 - lon1) / 2), 2)
)));
