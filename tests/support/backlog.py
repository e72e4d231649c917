"""A backlog for the erasure: many past stays, long ended, with their personal values still
there, as after importing a force's history or after the job was paused. Written straight in
SQL (the API would take minutes for tens of thousands)."""

from __future__ import annotations

from datetime import datetime, timedelta

from service.db import Connection
from tests.support.world import unique

# `$3` stays on bed `$1`, checked out at `$2`, of force `$4`, from custody suite `$5` (what
# names a test's backlog: the session's tests share a database): each with its personal fields, a
# check-out whose reason names someone, and (every third) feedback in the person's words.
# Departed stays are outside the beds' no-overlap rule, so they may all share one period.
BACKLOG = """
WITH spec AS (
    SELECT gen_random_uuid() AS id, g, bed.site_id, bed.id AS bed_id
    FROM generate_series(1, $3::int) g
    CROSS JOIN bed
    WHERE bed.id = $1
), alloc AS (
    INSERT INTO allocation (
        id, site_id, bed_id, kind, status, period, created_at, updated_at, ended_at
    )
    SELECT id, site_id, bed_id, 'booking', 'departed',
           tstzrange($2::timestamptz - interval '8 hours', $2, '[)'),
           $2 - interval '9 hours', $2, $2
    FROM spec
    RETURNING id
), booked AS (
    INSERT INTO booking (
        id, site_id, force_code, gender, dependants, wheelchair, custody_suite, person_ref,
        officer_collar, notes, checked_in_at, checked_out_at, created_at
    )
    SELECT spec.id, spec.site_id, $4, 'female', 0, false, $5,
           'BACKLOG-' || spec.g, 'PC ' || spec.g, 'Jane Backlog needs a quiet room',
           $2 - interval '8 hours', $2, $2 - interval '9 hours'
    FROM alloc JOIN spec ON spec.id = alloc.id
    RETURNING id
), steps AS (
    INSERT INTO booking_transition (booking_id, action, status, at, actor, reason)
    SELECT id, 'check-out', 'departed', $2, 'provider', 'left with her sister Jane'
    FROM booked
)
INSERT INTO feedback (booking_id, consent, what_would_help, created_at)
SELECT spec.id, true, 'Jane: someone to talk to', $2
FROM booked JOIN spec ON spec.id = booked.id
WHERE spec.g % 3 = 0
"""

# Bookings of the backlog (its custody suite) not erased yet.
UNERASED = """
SELECT count(*) FROM booking WHERE custody_suite = $1 AND personal_erased_at IS NULL
"""

# Each backlog booking's erasure audit rows, and what is left of its personal values.
ERASED_ONCE = """
SELECT b.id, b.person_ref, b.notes, f.what_would_help, t.reason,
       (SELECT count(*) FROM audit a
        WHERE a.action = 'erase' AND a.object_type = 'booking' AND a.object_id = b.id::text)
       AS audited
FROM booking b
LEFT JOIN feedback f ON f.booking_id = b.id
LEFT JOIN booking_transition t ON t.booking_id = b.id
WHERE b.custody_suite = $1
"""


async def add_backlog(
    conn: Connection, bed_id: object, force: str, count: int, ended: datetime
) -> str:
    """`count` stays on `bed_id` that ended at `ended`; returns the backlog's name."""
    suite = unique("Backlog Suite")
    await conn.execute(BACKLOG, bed_id, ended, count, force, suite)
    return suite


def long_ago(now: datetime, retention_days: int = 90) -> datetime:
    """An end far enough back that the erasure is due."""
    return now - timedelta(days=retention_days + 10)


async def unerased(conn: Connection, suite: str) -> int:
    return int(await conn.fetchval(UNERASED, suite))


async def erased_once_each(conn: Connection, suite: str) -> list[str]:
    """What is wrong with the backlog's erasure (empty when every booking is erased and audited
    exactly once)."""
    wrong: list[str] = []
    for row in await conn.fetch(ERASED_ONCE, suite):
        if row["audited"] != 1:
            wrong.append(f"{row['id']} audited {row['audited']} times")
        if any(row[name] is not None for name in ("person_ref", "notes", "what_would_help")):
            wrong.append(f"{row['id']} kept a personal value")
        if row["reason"] is not None:
            wrong.append(f"{row['id']} kept its step's reason")
    return wrong
