-- The event feed and webhooks (issue 9).
--
-- Feed order is (tx, id): the writing transaction's id, then the event's. A reader reads only
-- events of transactions older than every transaction still in progress
-- (pg_snapshot_xmin(pg_current_snapshot())), so an event that commits late never lands behind
-- a position a reader has already passed: nothing is skipped, and each transaction's events
-- arrive together and in order.
CREATE INDEX event_feed_idx ON event (tx, id);
CREATE INDEX event_force_feed_idx ON event (force_code, tx, id) WHERE force_code IS NOT NULL;
CREATE INDEX event_provider_feed_idx ON event (provider_id, tx, id);
CREATE INDEX event_site_feed_idx ON event (tx, id) WHERE type = 'site.availability_changed';

-- Long-polling readers and the webhook dispatcher wake when events commit: one NOTIFY per
-- writing transaction (PostgreSQL folds identical notifications of one transaction and sends
-- them at commit, never for a transaction that rolls back).
CREATE FUNCTION event_committed_notify() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('pos_event', '');
    RETURN NULL;
END
$$;
CREATE TRIGGER event_notify AFTER INSERT ON event
    FOR EACH STATEMENT EXECUTE FUNCTION event_committed_notify();

-- A subscription: where to send which events, in the scope of the key that made it (an
-- officer's force, a provider's sites, or everything for an admin). The signing secret is
-- kept because every delivery is signed with it; it is shown once, at creation.
CREATE TABLE webhook (
    id               uuid PRIMARY KEY,
    url              text NOT NULL CHECK (length(url) BETWEEN 1 AND 2000),
    event_types      text[] NOT NULL CHECK (
        cardinality(event_types) > 0
        AND event_types <@ ARRAY[
            'booking.held', 'booking.pending', 'booking.confirmed', 'booking.declined',
            'booking.cancelled', 'booking.expired', 'booking.arrived', 'booking.departed',
            'booking.no_show', 'booking.extended', 'site.availability_changed'
        ]
    ),
    secret           text NOT NULL,
    created_by       uuid NOT NULL REFERENCES api_key (id),
    role             text NOT NULL CHECK (role IN ('admin', 'officer', 'provider')),
    force_code       text REFERENCES force (code),
    provider_id      uuid REFERENCES provider (id),
    status           text NOT NULL DEFAULT 'active'
        CHECK (status IN ('active', 'disabled', 'deleted')),
    disabled_reason  text,
    -- The feed position of the last event delivered or given up: the next one waits for it.
    after_tx         xid8 NOT NULL,
    after_id         bigint NOT NULL DEFAULT 0,
    -- The event now being delivered: attempts so far, the first one's time, the next one's.
    attempts         integer NOT NULL DEFAULT 0,
    first_attempt_at timestamptz,
    next_attempt_at  timestamptz,
    -- A dispatcher's claim on the subscription while it sends; a process killed mid-delivery
    -- leaves it to lapse, and another takes the delivery up again (at least once).
    leased_until     timestamptz,
    created_at       timestamptz NOT NULL,
    updated_at       timestamptz NOT NULL,
    CONSTRAINT webhook_scope CHECK (
        (role = 'admin' AND force_code IS NULL AND provider_id IS NULL)
        OR (role = 'officer' AND force_code IS NOT NULL AND provider_id IS NULL)
        OR (role = 'provider' AND provider_id IS NOT NULL AND force_code IS NULL)
    )
);
CREATE INDEX webhook_paging_idx ON webhook (created_at, id);
CREATE INDEX webhook_due_idx ON webhook (next_attempt_at) WHERE status = 'active';

-- Every delivery attempt, kept 30 days: what was sent, what came back, what happens next.
CREATE TABLE webhook_delivery (
    id              bigserial PRIMARY KEY,
    webhook_id      uuid NOT NULL REFERENCES webhook (id),
    event_id        bigint NOT NULL,
    attempt         integer NOT NULL CHECK (attempt >= 1),
    at              timestamptz NOT NULL,
    status_code     integer,
    duration_ms     integer NOT NULL CHECK (duration_ms >= 0),
    error           text,
    outcome         text NOT NULL CHECK (outcome IN ('delivered', 'retry', 'gave_up', 'disabled')),
    next_attempt_at timestamptz
);
CREATE INDEX webhook_delivery_webhook_idx ON webhook_delivery (webhook_id, id);
CREATE INDEX webhook_delivery_at_idx ON webhook_delivery (at);

-- Subscriptions are audited like every other resource.
ALTER TABLE audit DROP CONSTRAINT audit_object_type_check;
ALTER TABLE audit ADD CONSTRAINT audit_object_type_check CHECK (object_type IN (
    'force', 'provider', 'api_key', 'site', 'bed', 'block', 'booking', 'webhook'
));
