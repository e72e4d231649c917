-- Issue 10: coded reasons on decline, cancel and no-show; when a booking ended (retention
-- counts from there); the placed person's own feedback.

-- A reason code from the contract's lists (service/vocab.py REASON_CODES; which code fits
-- which action is the service's rule, this CHECK holds the union). Rows written before codes
-- existed read as a body without one does today: `other` with its free-text reason (decline
-- and cancel always required one), `person_did_not_arrive` for a no-show.
ALTER TABLE booking_transition ADD COLUMN reason_code text CHECK (reason_code IN (
    'no_suitable_bed', 'risk_assessment', 'cannot_meet_needs', 'site_full',
    'person_declined_placement', 'person_entered_other_support', 'transport_failed',
    'booked_in_error', 'person_did_not_arrive', 'person_left_custody_elsewhere', 'other'
));
UPDATE booking_transition SET reason_code = 'other' WHERE action IN ('decline', 'cancel');
UPDATE booking_transition SET reason_code = 'person_did_not_arrive' WHERE action = 'no-show';
ALTER TABLE booking_transition
    ADD CONSTRAINT booking_transition_coded_when_required
        CHECK ((reason_code IS NOT NULL) = (action IN ('decline', 'cancel', 'no-show'))),
    ADD CONSTRAINT booking_transition_other_is_explained
        CHECK (reason_code IS DISTINCT FROM 'other' OR reason IS NOT NULL);

-- When a booking's stay ended: its departure, expiry, cancellation, decline or no-show. Set
-- with the step into the terminal state; personal data is kept for the retention period from
-- here. Rows already ended are dated by their last change, which was that step.
ALTER TABLE allocation ADD COLUMN ended_at timestamptz;
UPDATE allocation SET ended_at = updated_at
WHERE status IN ('departed', 'expired', 'cancelled', 'declined', 'no_show');

CREATE FUNCTION allocation_has_ended(status text) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN status IN ('departed', 'expired', 'cancelled', 'declined', 'no_show');

ALTER TABLE allocation ADD CONSTRAINT allocation_ended_when_terminal
    CHECK ((ended_at IS NOT NULL) = allocation_has_ended(status));

-- The purge looks only at bookings whose personal fields are still there: those within the
-- retention period and the live ones, not the years of erased history.
CREATE INDEX booking_unerased_idx ON booking (id) WHERE personal_erased_at IS NULL;

-- The person's own answers about the stay, recorded by the provider with their consent. One
-- per booking. `what_would_help` is a personal field: erased with the booking's, withheld from
-- officers, never in events, logs or reports.
CREATE TABLE feedback (
    booking_id           uuid PRIMARY KEY REFERENCES booking (id),
    consent              boolean NOT NULL CHECK (consent),
    felt_safe            smallint CHECK (felt_safe BETWEEN 1 AND 5),
    treated_with_respect smallint CHECK (treated_with_respect BETWEEN 1 AND 5),
    needs_met            text CHECK (needs_met IN ('yes', 'partly', 'no')),
    language_used        text CHECK (language_used ~ '^[a-z]{2}$'),
    what_would_help      text CHECK (char_length(what_would_help) <= 2000),
    created_at           timestamptz NOT NULL,
    created_by           uuid REFERENCES api_key (id)
);
CREATE INDEX feedback_text_idx ON feedback (booking_id) WHERE what_would_help IS NOT NULL;
