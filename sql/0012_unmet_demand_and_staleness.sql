-- Unmet demand by cause, and capacity that is never silently stale (issue 10).

-- A search that found no site records which hard need emptied it: the first of these that
-- leaves no site when the needs are applied in this order. NULL when sites were found.
ALTER TABLE search ADD COLUMN empty_cause text CHECK (empty_cause IN (
    'none_active', 'gender', 'dependants', 'wheelchair', 'max_stay', 'exclusion_zone',
    'distance', 'no_free_bed'
));

-- When the provider last changed or confirmed the site's capacity (its beds, blocks or status,
-- or POST /v1/sites/{id}/confirm-capacity); a site is stale STALE_AFTER_HOURS after it.
-- `stale_announced_at`: when site.capacity_stale was emitted for the current staleness (so it
-- fires once); cleared by the next confirmation.
-- The service sets it from its clock; the default serves bulk loaders (bench, plan tests), as
-- created_at's does.
ALTER TABLE site ADD COLUMN capacity_confirmed_at timestamptz;
UPDATE site SET capacity_confirmed_at = updated_at;
ALTER TABLE site ALTER COLUMN capacity_confirmed_at SET DEFAULT now();
ALTER TABLE site ALTER COLUMN capacity_confirmed_at SET NOT NULL;
ALTER TABLE site ADD COLUMN stale_announced_at timestamptz;

ALTER TABLE event DROP CONSTRAINT event_type_known;
ALTER TABLE event ADD CONSTRAINT event_type_known CHECK (type IN (
    'booking.held', 'booking.pending', 'booking.confirmed', 'booking.declined',
    'booking.cancelled', 'booking.expired', 'booking.arrived', 'booking.departed',
    'booking.no_show', 'booking.extended', 'site.availability_changed', 'site.capacity_stale'
));
ALTER TABLE webhook DROP CONSTRAINT webhook_event_types_check;
ALTER TABLE webhook ADD CONSTRAINT webhook_event_types_check CHECK (
    cardinality(event_types) > 0
    AND event_types <@ ARRAY[
        'booking.held', 'booking.pending', 'booking.confirmed', 'booking.declined',
        'booking.cancelled', 'booking.expired', 'booking.arrived', 'booking.departed',
        'booking.no_show', 'booking.extended', 'site.availability_changed', 'site.capacity_stale'
    ]
);
