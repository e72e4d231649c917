"""The placed person's own feedback on a booking: one row per booking."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

import asyncpg

from service.db import Connection

# The booking's row is locked so feedback and the purge of the booking's personal fields
# queue: feedback is recorded only while they are still there, and never after erasure.
LOCK_BOOKING = """
SELECT b.id, b.force_code, s.provider_id, b.personal_erased_at,
       allocation_status(a.status, a.hold_expires_at, a.respond_by, $2) AS status
FROM booking b
JOIN allocation a ON a.id = b.id
JOIN site s ON s.id = b.site_id
WHERE b.id = $1
FOR UPDATE OF b
"""

# One feedback per booking: the primary key decides; nothing back means one was there.
INSERT = """
INSERT INTO feedback (
    booking_id, consent, felt_safe, treated_with_respect, needs_met, language_used,
    what_would_help, created_at, created_by
)
VALUES ($1, true, $2, $3, $4, $5, $6, $7, $8)
ON CONFLICT (booking_id) DO NOTHING
RETURNING booking_id
"""


async def lock_booking(conn: Connection, booking_id: UUID, at: datetime) -> asyncpg.Record | None:
    return await conn.fetchrow(LOCK_BOOKING, booking_id, at)


async def insert(
    conn: Connection,
    booking_id: UUID,
    *,
    felt_safe: int | None,
    treated_with_respect: int | None,
    needs_met: str | None,
    language_used: str | None,
    what_would_help: str | None,
    at: datetime,
    by: UUID,
) -> bool:
    """Records the feedback; False when the booking already has one."""
    inserted = await conn.fetchval(
        INSERT,
        booking_id,
        felt_safe,
        treated_with_respect,
        needs_met,
        language_used,
        what_would_help,
        at,
        by,
    )
    return inserted is not None
