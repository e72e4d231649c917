"""Erasing personal fields once the retention period after a stay has passed."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from uuid import UUID

from service.db import Connection

# Personal fields of bookings that ended (a terminal state, entered at updated_at) at or
# before `$2`: erased; the rows, states and times that reports count are kept. The ids come
# back so each erasure is audited.
ERASE_PERSONAL_RETURNING = """
UPDATE booking b
SET person_ref = NULL, officer_collar = NULL, notes = NULL, personal_erased_at = $1
FROM allocation a
WHERE a.id = b.id
  AND b.personal_erased_at IS NULL
  AND a.status = ANY($3::text[])
  AND a.updated_at <= $2
RETURNING b.id
"""


async def erase_personal(
    conn: Connection, at: datetime, ended_before: datetime, ended: Collection[str]
) -> list[UUID]:
    """Erases the personal fields of bookings in one of the `ended` states since
    `ended_before`; returns their ids."""
    rows = await conn.fetch(ERASE_PERSONAL_RETURNING, at, ended_before, sorted(ended))
    return [row["id"] for row in rows]
