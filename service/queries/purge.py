"""Erasing personal fields once the retention period after a stay has passed."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from service.db import Connection

# One purge at a time, across replicas and `pos purge`: the lock is held to the end of the
# purge's transaction. The job tries and, when another has it, leaves this round to them.
LOCK = "SELECT pg_advisory_xact_lock(hashtextextended('pos-purge', 0))"
TRY_LOCK = "SELECT pg_try_advisory_xact_lock(hashtextextended('pos-purge', 0))"

# Personal fields of bookings whose stay ended (allocation.ended_at) at or before `$2`:
# erased; the rows, states, times and codes that reports count are kept. Through
# booking_unerased_idx: only bookings not yet erased are looked at. The ids come back so each
# erasure is audited.
ERASE_PERSONAL_RETURNING = """
UPDATE booking b
SET person_ref = NULL, officer_collar = NULL, notes = NULL, personal_erased_at = $1
FROM allocation a
WHERE a.id = b.id
  AND b.personal_erased_at IS NULL
  AND a.ended_at <= $2
RETURNING b.id
"""

# The person's own words in feedback go with the booking's personal fields. A statement of
# its own (a fresh snapshot): it also finds feedback committed while the one above waited for
# a booking's lock; feedback arriving after the booking's erasure is refused.
ERASE_FEEDBACK_TEXT_RETURNING = """
UPDATE feedback f
SET what_would_help = NULL
FROM booking b
WHERE b.id = f.booking_id
  AND f.what_would_help IS NOT NULL
  AND b.personal_erased_at IS NOT NULL
RETURNING f.booking_id
"""


async def lock(conn: Connection, *, wait: bool) -> bool:
    """Takes the purge's lock for the transaction; without `wait`, False if another has it."""
    if wait:
        await conn.execute(LOCK)
        return True
    return bool(await conn.fetchval(TRY_LOCK))


async def erase_personal(conn: Connection, at: datetime, ended_before: datetime) -> list[UUID]:
    """Erases the personal fields of bookings that ended by `ended_before`; returns their ids."""
    rows = await conn.fetch(ERASE_PERSONAL_RETURNING, at, ended_before)
    return [row["id"] for row in rows]


async def erase_feedback_text(conn: Connection) -> list[UUID]:
    """Erases feedback text of bookings whose personal fields are erased; returns their ids."""
    rows = await conn.fetch(ERASE_FEEDBACK_TEXT_RETURNING)
    return [row["booking_id"] for row in rows]
