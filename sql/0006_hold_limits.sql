-- Limits (issue 6). Live holds per API key and per force are capped: the hold transaction
-- takes its force's advisory lock and counts the force's live holds through
-- allocation_hold_due_idx (partial on status = 'held', so it never grows with history).
--
-- An idempotent replay of a booking answer re-reads the booking and shows it as the caller may
-- see it now (an address stays hidden once the booking is cancelled), so the stored answer
-- keeps the booking's id rather than a body with the address and personal fields in it.
ALTER TABLE idempotency_key ADD COLUMN booking_id uuid REFERENCES booking (id);

-- Searches the caller's key sent that the per-key rate limit refused since its previous
-- recorded search (the limiter never writes to the database; the next search carries the
-- count), so unmet demand reports can count searches refused by the limit.
ALTER TABLE search ADD COLUMN refused_before integer NOT NULL DEFAULT 0
    CHECK (refused_before >= 0);
