-- Issue 14: the words written beside a booking's steps (a cancellation's, a decline's, a
-- no-show's, a check-out's or an extension's `reason`, where people write names) are erased
-- with the booking's personal fields; the reason code, which reports count, stays.

-- When a step's reason was erased. `other` is explained by its reason until then.
ALTER TABLE booking_transition ADD COLUMN reason_erased_at timestamptz;
ALTER TABLE booking_transition
    DROP CONSTRAINT booking_transition_other_is_explained,
    ADD CONSTRAINT booking_transition_other_is_explained
        CHECK (reason_code IS DISTINCT FROM 'other' OR reason IS NOT NULL
               OR reason_erased_at IS NOT NULL),
    ADD CONSTRAINT booking_transition_erased_reason_is_gone
        CHECK (reason_erased_at IS NULL OR reason IS NULL);

-- Bookings erased before this migration kept their steps' reasons: erased now, and audited as
-- the purge audits an erasure (the field's name, never its value).
WITH erased AS (
    UPDATE booking_transition t
    SET reason = NULL, reason_erased_at = now()
    FROM booking b
    WHERE b.id = t.booking_id
      AND b.personal_erased_at IS NOT NULL
      AND t.reason IS NOT NULL
    RETURNING t.booking_id
)
INSERT INTO audit (at, role, action, object_type, object_id, fields)
SELECT DISTINCT now(), 'system', 'erase', 'booking', booking_id::text, ARRAY['history.reason']
FROM erased;
