"""Bookings: holds, transitions, expiry, and the booking as the API shows it. (Their history,
events and audit rows are written by one call: service/usecases/changes.py, sql/0022.)"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

import asyncpg

from service.db import Connection
from service.paging import Position

SITE_FOR_BOOKING = """
SELECT id, provider_id, status, genders_accepted, booking_mode, max_stay_hours
FROM site WHERE id = $1
"""

# Beds of the site that meet the hard needs (the search's bed filter, sql/0025) and have no live
# claim overlapping the window. Best fit among them is the domain's choice (service.domain.beds).
FREE_BEDS = """
SELECT b.id, b.label, b.room_type, b.wheelchair_accessible, b.max_dependants
FROM bed b
WHERE b.site_id = $1
  AND bed_meets_needs(b.removed_at, b.in_service, b.max_dependants, b.wheelchair_accessible,
                      $4::int, $5::bool)
  AND NOT EXISTS (SELECT 1 FROM live_claims($2, $3, $6) c WHERE c.bed_id = b.id)
"""

# Every hold of a force takes this lock first (before any bed's claim lock, so no cycle), for
# the rest of its transaction: the count below then sees every hold of the force that got in
# before it, on any replica. The force's lock covers its keys' caps too (a key has one force).
LOCK_HOLD_CAPS = "SELECT pg_advisory_xact_lock(hashtextextended('hold-cap:' || $1::text, 0))"

# The force's bookings not yet arrived, and the key's among them: live holds and pending
# requests (with when the first of each lapses), and confirmations whose stay has not ended.
# Through allocation_hold_due_idx, allocation_pending_due_idx and allocation_confirmed_end_idx
# (partial on their status): none grows with history.
OPEN_BOOKINGS = """
WITH open AS (
    SELECT a.id, a.hold_expires_at AS lapses_at FROM allocation a
    WHERE a.status = 'held' AND a.hold_expires_at > $3
    UNION ALL
    -- A request-mode booking waiting for the provider still ties up its bed: it counts as a
    -- hold too, or asking would be a way round the cap.
    SELECT a.id, a.respond_by FROM allocation a
    WHERE a.status = 'pending' AND a.respond_by > $3
    UNION ALL
    -- Confirmed and not yet arrived: no lapse, it waits for the person.
    SELECT a.id, NULL FROM allocation a
    WHERE a.status = 'confirmed' AND a.kind = 'booking' AND upper(a.period) > $3
)
SELECT count(open.lapses_at) FILTER (WHERE b.created_by = $2) AS holds_by_key,
       count(open.lapses_at) AS holds_by_force,
       count(*) FILTER (WHERE b.created_by = $2) AS open_by_key,
       count(*) AS open_by_force,
       min(open.lapses_at) FILTER (WHERE b.created_by = $2) AS key_next_lapse,
       min(open.lapses_at) AS force_next_lapse
FROM open
JOIN booking b ON b.id = open.id
WHERE b.force_code = $1
"""

INSERT_HOLD = """
INSERT INTO allocation (
    id, site_id, bed_id, kind, status, period, hold_expires_at, created_at, updated_at
)
VALUES ($1, $2, $3, 'booking', 'held', tstzrange($4, $5, '[)'), $6, $7, $7)
"""

INSERT_BOOKING = """
INSERT INTO booking (
    id, site_id, force_code, gender, dependants, wheelchair, language, custody_suite,
    person_ref, officer_collar, notes, created_by, created_at
)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
"""

# Lapsed holds and pending requests, written off. SKIP LOCKED: rows another transaction is
# already acting on (a confirm, another replica's sweep) are left to it. The stay ended when
# it lapsed (as its history says), not when the sweep came by.
#
# A batch's records come from the same statement's result, not a round trip per booking
# (issue 15 item 1), and are the rows each booking's own would be (record_change(), sql/0022):
# a step of history dated when it lapsed ($5 held / $6 pending: why), the booking's event and
# its site's availability change in that order, booking by booking, and one audit row each,
# as the service ($4: its name; $7: the request, when a request's hold wrote them off). The
# events are built from the UPDATE's result: the other parts of one statement see the rows as
# they were before it.
EXPIRE_LAPSED = """
WITH due AS (
    SELECT id, status,
           CASE status WHEN 'held' THEN hold_expires_at ELSE respond_by END AS lapsed_at
    FROM allocation
    WHERE kind = 'booking'
      AND ((status = 'held' AND hold_expires_at <= $1)
           OR (status = 'pending' AND respond_by <= $1))
      AND ($2::uuid IS NULL OR bed_id = $2)
    ORDER BY id
    LIMIT $3
    FOR UPDATE SKIP LOCKED
), expired AS (
    UPDATE allocation a SET status = 'expired', updated_at = $1, ended_at = due.lapsed_at
    FROM due
    WHERE a.id = due.id
    RETURNING a.id, a.site_id, a.status, a.bed_id, a.period, due.status AS was, due.lapsed_at
), history AS (
    INSERT INTO booking_transition (booking_id, action, status, at, actor, reason)
    SELECT e.id, 'expire', 'expired', e.lapsed_at, $4,
           CASE e.was WHEN 'held' THEN $5::text ELSE $6::text END
    FROM expired e
    ORDER BY e.id
    RETURNING 1
), events AS (
    INSERT INTO event (type, booking_id, site_id, force_code, provider_id, data, occurred_at)
    SELECT x.type, x.booking_id, x.site_id, x.force_code, s.provider_id, x.data, e.lapsed_at
    FROM expired e
    JOIN booking b ON b.id = e.id
    JOIN site s ON s.id = e.site_id
    CROSS JOIN LATERAL (VALUES
        (1, 'booking.expired', b.id, b.site_id, b.force_code,
         jsonb_build_object(
             'booking_id', b.id, 'status', e.status, 'site_id', b.site_id,
             'force', b.force_code, 'bed_id', e.bed_id,
             'start', lower(e.period), 'end', upper(e.period)
         )),
        (2, 'site.availability_changed', NULL, e.site_id, NULL,
         jsonb_build_object('site_id', e.site_id, 'cause', 'booking_released'))
    ) AS x (n, type, booking_id, site_id, force_code, data)
    ORDER BY e.id, x.n
    RETURNING 1
), audited AS (
    INSERT INTO audit (at, role, request_id, action, object_type, object_id, fields)
    SELECT $1, $4, $7, 'expire', 'booking', e.id::text, ARRAY['status']
    FROM expired e
    ORDER BY e.id
    RETURNING 1
)
SELECT (SELECT count(*) FROM expired) AS expired,
       (SELECT count(*) FROM history) AS history,
       (SELECT count(*) FROM events) AS events,
       (SELECT count(*) FROM audited) AS audited
"""

LOCK_FOR_ACTION = """
SELECT a.id, allocation_status(a.status, a.hold_expires_at, a.respond_by, $2) AS status,
       a.bed_id,
       lower(a.period) AS start, upper(a.period) AS "end",
       b.force_code, b.site_id, s.provider_id, s.booking_mode, s.max_stay_hours
FROM allocation a
JOIN booking b ON b.id = a.id
JOIN site s ON s.id = b.site_id
WHERE a.id = $1
FOR UPDATE OF a
"""

# A step into a terminal state ($5) ends the stay at the step's time.
SET_STATUS = """
UPDATE allocation
SET status = $2, respond_by = coalesce($3, respond_by), updated_at = $4,
    ended_at = CASE WHEN $5 THEN $4::timestamptz END
WHERE id = $1
"""

SET_PERIOD = """
UPDATE allocation SET period = tstzrange($2, $3, '[)'), updated_at = $4
WHERE id = $1
"""

MARK_CHECKED_IN = "UPDATE booking SET checked_in_at = $2 WHERE id = $1"
MARK_CHECKED_OUT = "UPDATE booking SET checked_out_at = $2 WHERE id = $1"

# The booking as the API shows it, in one statement: columns named as the API names them,
# `needs`, `site` and `history` built as JSON here. The effective status (a lapsed hold reads
# as expired at once). `provider_id` is for the caller's scope check only, and the site's
# address and phone are for the use case to withhold where SPEC section 4 says so (and
# `phone_only` tells it one it always withholds from officers).
# History through booking_transition_booking_idx, in the order it happened.
SELECT_BOOKINGS = """
SELECT b.id, b.site_id, b.force_code AS force, a.bed_id,
       allocation_status(a.status, a.hold_expires_at, a.respond_by, $1) AS status,
       lower(a.period) AS start, upper(a.period) AS "end",
       json_build_object(
           'gender', b.gender, 'dependants', b.dependants,
           'wheelchair', b.wheelchair, 'language', b.language
       ) AS needs,
       b.person_ref, b.custody_suite, b.officer_collar, b.notes,
       a.hold_expires_at, a.respond_by, b.checked_in_at, b.checked_out_at,
       (SELECT coalesce(
                   json_agg(
                       json_build_object(
                           'action', t.action, 'status', t.status, 'at', t.at,
                           'by', t.actor, 'reason_code', t.reason_code,
                           'reason', t.reason
                       )
                       ORDER BY t.id
                   ),
                   '[]'::json
               )
        FROM booking_transition t
        WHERE t.booking_id = b.id) AS history,
       (SELECT json_build_object(
                   'consent', f.consent, 'felt_safe', f.felt_safe,
                   'treated_with_respect', f.treated_with_respect, 'needs_met', f.needs_met,
                   'language_used', f.language_used, 'what_would_help', f.what_would_help,
                   'created_at', f.created_at
               )
        FROM feedback f
        WHERE f.booking_id = b.id) AS feedback,
       json_build_object(
           'name', s.name, 'area', s.area, 'address', s.address, 'phone', s.phone,
           'duty_phone', p.duty_phone
       ) AS site,
       b.created_at, a.updated_at,
       s.provider_id, s.address_by_phone_only AS phone_only
FROM booking b
JOIN allocation a ON a.id = b.id
JOIN site s ON s.id = b.site_id
JOIN provider p ON p.id = s.provider_id
"""

GET = SELECT_BOOKINGS + "WHERE b.id = $2"

# Scope first ($2 force for officers, $3 provider for providers), then the caller's filters.
LIST = (
    SELECT_BOOKINGS
    + """
WHERE ($2::text IS NULL OR b.force_code = $2)
  AND ($3::uuid IS NULL OR s.provider_id = $3)
  AND ($4::text IS NULL OR b.force_code = $4)
  AND ($5::uuid IS NULL OR b.site_id = $5)
  AND ($6::text IS NULL OR allocation_status(a.status, a.hold_expires_at, a.respond_by, $1) = $6)
  AND ($7::timestamptz IS NULL OR a.updated_at >= $7)
  AND ($8::timestamptz IS NULL OR (b.created_at, b.id) > ($8, $9))
ORDER BY b.created_at, b.id
LIMIT $10
"""
)


async def site_for_booking(conn: Connection, site_id: UUID) -> asyncpg.Record | None:
    return await conn.fetchrow(SITE_FOR_BOOKING, site_id)


async def lock_hold_caps(conn: Connection, force_code: str) -> None:
    await conn.execute(LOCK_HOLD_CAPS, force_code)


async def open_bookings(
    conn: Connection, force_code: str, api_key_id: UUID, at: datetime
) -> asyncpg.Record:
    row = await conn.fetchrow(OPEN_BOOKINGS, force_code, api_key_id, at)
    assert row is not None
    return row


async def free_beds(
    conn: Connection,
    site_id: UUID,
    start: datetime,
    end: datetime,
    dependants: int,
    wheelchair: bool,
    at: datetime,
) -> list[asyncpg.Record]:
    return await conn.fetch(FREE_BEDS, site_id, start, end, dependants, wheelchair, at)


async def insert_hold(
    conn: Connection,
    booking_id: UUID,
    site_id: UUID,
    bed_id: UUID,
    start: datetime,
    end: datetime,
    hold_expires_at: datetime,
    at: datetime,
) -> None:
    await conn.execute(INSERT_HOLD, booking_id, site_id, bed_id, start, end, hold_expires_at, at)


@dataclass(frozen=True)
class NewBooking:
    """A booking's own row: who it is for and what they need (its bed time is the hold's)."""

    id: UUID
    site_id: UUID
    force_code: str
    gender: str
    dependants: int
    wheelchair: bool
    language: str | None
    custody_suite: str
    person_ref: str
    officer_collar: str
    notes: str | None
    created_by: UUID
    created_at: datetime


async def insert_booking(conn: Connection, booking: NewBooking) -> None:
    await conn.execute(
        INSERT_BOOKING,
        booking.id,
        booking.site_id,
        booking.force_code,
        booking.gender,
        booking.dependants,
        booking.wheelchair,
        booking.language,
        booking.custody_suite,
        booking.person_ref,
        booking.officer_collar,
        booking.notes,
        booking.created_by,
        booking.created_at,
    )


async def expire_lapsed(
    conn: Connection,
    at: datetime,
    *,
    bed_id: UUID | None,
    limit: int,
    on_behalf: str,
    held_reason: str,
    pending_reason: str,
    request_id: str | None,
) -> int:
    """Expires up to `limit` lapsed bookings (on one bed, or anywhere) with their records, as
    the service named `on_behalf`; how many."""
    row = await conn.fetchrow(
        EXPIRE_LAPSED, at, bed_id, limit, on_behalf, held_reason, pending_reason, request_id
    )
    assert row is not None
    expired: int = row["expired"]
    assert row["history"] == row["audited"] == expired
    assert row["events"] == 2 * expired
    return expired


async def lock_for_action(
    conn: Connection, booking_id: UUID, at: datetime
) -> asyncpg.Record | None:
    return await conn.fetchrow(LOCK_FOR_ACTION, booking_id, at)


async def set_status(
    conn: Connection,
    booking_id: UUID,
    status: str,
    at: datetime,
    respond_by: datetime | None = None,
    *,
    ends_stay: bool = False,
) -> None:
    await conn.execute(SET_STATUS, booking_id, status, respond_by, at, ends_stay)


async def set_period(
    conn: Connection, booking_id: UUID, start: datetime, end: datetime, at: datetime
) -> None:
    await conn.execute(SET_PERIOD, booking_id, start, end, at)


async def mark_checked_in(conn: Connection, booking_id: UUID, at: datetime) -> None:
    await conn.execute(MARK_CHECKED_IN, booking_id, at)


async def mark_checked_out(conn: Connection, booking_id: UUID, at: datetime) -> None:
    await conn.execute(MARK_CHECKED_OUT, booking_id, at)


async def get(conn: Connection, booking_id: UUID, at: datetime) -> asyncpg.Record | None:
    return await conn.fetchrow(GET, at, booking_id)


async def list_page(
    conn: Connection,
    at: datetime,
    *,
    scope_force: str | None,
    scope_provider: UUID | None,
    force: str | None,
    site_id: UUID | None,
    status: str | None,
    updated_since: datetime | None,
    after: Position | None,
    limit: int,
) -> list[asyncpg.Record]:
    created_at, booking_id = after if after is not None else (None, None)
    return await conn.fetch(
        LIST,
        at,
        scope_force,
        scope_provider,
        force,
        site_id,
        status,
        updated_since,
        created_at,
        booking_id,
        limit,
    )
