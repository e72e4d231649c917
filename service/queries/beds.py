"""Beds: the bookable units of a site."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

import asyncpg

from service.db import Connection
from service.ids import new_id
from service.paging import Position

# A bed as every statement below answers it, named as the API names its fields: a field added
# to the API is added here once.
COLUMNS = """
    id, site_id, label, room_type, wheelchair_accessible, max_dependants, in_service,
    version, created_at, updated_at
"""

INSERT = (
    """
INSERT INTO bed (
    id, site_id, label, room_type, wheelchair_accessible, max_dependants, in_service,
    created_at, updated_at
)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8)
RETURNING"""
    + COLUMNS
)

# Every read of beds: the statements below add their WHERE.
SELECT = "SELECT" + COLUMNS + "FROM bed\n"

GET = SELECT + "WHERE id = $1 AND site_id = $2 AND removed_at IS NULL"

LIST = (
    SELECT
    + """WHERE site_id = $1 AND removed_at IS NULL
  AND ($2::timestamptz IS NULL OR (created_at, id) > ($2, $3))
ORDER BY created_at, id
LIMIT $4
"""
)

# Row lock: a bed being changed or retired is not being booked at the same moment (a claim
# takes FOR NO KEY UPDATE on the bed it claims), and the what-changed check sees this very row.
LOCK = SELECT + "WHERE id = $1 AND site_id = $2 AND removed_at IS NULL FOR UPDATE"

UPDATE = (
    """
UPDATE bed SET
    label = coalesce($2, label),
    room_type = coalesce($3, room_type),
    wheelchair_accessible = coalesce($4, wheelchair_accessible),
    max_dependants = coalesce($5, max_dependants),
    in_service = coalesce($6, in_service),
    version = version + 1,
    updated_at = $7
WHERE id = $1
RETURNING"""
    + COLUMNS
)

# Every write that claims time on a bed (hold, block, extend) first takes this lock, so claims
# on one bed queue one behind the other. Without it, two concurrent overlapping inserts can
# each wait in the exclusion constraint for the other to finish: a deadlock. The constraint
# stays the arbiter; the lock only orders the contenders. Also waits for a provider changing
# or retiring the bed (FOR UPDATE there).
LOCK_FOR_CLAIM = """
SELECT in_service, removed_at IS NOT NULL AS removed FROM bed WHERE id = $1 FOR NO KEY UPDATE
"""

RETIRE = "UPDATE bed SET removed_at = $2, version = version + 1, updated_at = $2 WHERE id = $1"


async def create(
    conn: Connection,
    site_id: UUID,
    *,
    label: str,
    room_type: str,
    wheelchair_accessible: bool,
    max_dependants: int,
    in_service: bool,
    at: datetime,
) -> asyncpg.Record:
    row = await conn.fetchrow(
        INSERT,
        new_id(),
        site_id,
        label,
        room_type,
        wheelchair_accessible,
        max_dependants,
        in_service,
        at,
    )
    assert row is not None
    return row


async def get(conn: Connection, site_id: UUID, bed_id: UUID) -> asyncpg.Record | None:
    return await conn.fetchrow(GET, bed_id, site_id)


async def list_page(
    conn: Connection, site_id: UUID, after: Position | None, limit: int
) -> list[asyncpg.Record]:
    created_at, bed_id = after if after is not None else (None, None)
    return await conn.fetch(LIST, site_id, created_at, bed_id, limit)


async def lock(conn: Connection, site_id: UUID, bed_id: UUID) -> asyncpg.Record | None:
    return await conn.fetchrow(LOCK, bed_id, site_id)


async def update(
    conn: Connection,
    bed_id: UUID,
    *,
    at: datetime,
    label: str | None = None,
    room_type: str | None = None,
    wheelchair_accessible: bool | None = None,
    max_dependants: int | None = None,
    in_service: bool | None = None,
) -> asyncpg.Record:
    """Sets the columns given (None keeps a column as it is), bumps the version."""
    row = await conn.fetchrow(
        UPDATE,
        bed_id,
        label,
        room_type,
        wheelchair_accessible,
        max_dependants,
        in_service,
        at,
    )
    assert row is not None
    return row


async def lock_for_claim(conn: Connection, bed_id: UUID) -> asyncpg.Record | None:
    """The bed's `in_service` and `removed`; None when there is no such bed."""
    return await conn.fetchrow(LOCK_FOR_CLAIM, bed_id)


async def retire(conn: Connection, bed_id: UUID, at: datetime) -> None:
    await conn.execute(RETIRE, bed_id, at)
