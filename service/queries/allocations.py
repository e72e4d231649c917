"""The allocation ledger: blocks, and the per-bed timeline of everything claiming a bed."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

import asyncpg

from service.db import Connection
from service.ids import new_id
from service.paging import Position
from service.vocab import BLOCKED, AllocationKind

INSERT_BLOCK = """
INSERT INTO allocation (id, site_id, bed_id, kind, status, period, reason, created_at, updated_at)
VALUES ($1, $2, $3, $7, $8, tstzrange($4, $5, '[)'), $6, $9, $9)
RETURNING id, bed_id, lower(period) AS start, upper(period) AS "end", reason, created_at
"""

# The live claim that stands in the way of [start, end) on a bed, to name it in a 409, with
# whose it is (the booking's force, the site's provider): only its owners may see it named.
FIND_CONFLICT = """
SELECT a.id, a.kind, a.status, lower(a.period) AS start, upper(a.period) AS "end",
       bk.force_code, s.provider_id
FROM live_claims($2, $3, $4) c
JOIN allocation a ON a.id = c.allocation_id
JOIN site s ON s.id = a.site_id
LEFT JOIN booking bk ON bk.id = a.id
WHERE c.bed_id = $1
ORDER BY lower(a.period)
LIMIT 1
"""

# What still claims a bed from `at` on: such a bed cannot be retired.
FIND_FUTURE_CLAIM = """
SELECT a.id, a.kind, a.status, lower(a.period) AS start, upper(a.period) AS "end"
FROM live_claims($2, 'infinity', $2) c
JOIN allocation a ON a.id = c.allocation_id
WHERE c.bed_id = $1
ORDER BY lower(a.period)
LIMIT 1
"""

LIST_BLOCKS = """
SELECT id, bed_id, lower(period) AS start, upper(period) AS "end", reason, created_at
FROM allocation
WHERE site_id = $1 AND kind = $8
  AND ($2::uuid IS NULL OR bed_id = $2)
  AND ($3::timestamptz IS NULL OR upper(period) > $3)
  AND ($4::timestamptz IS NULL OR lower(period) < $4)
  AND ($5::timestamptz IS NULL OR (created_at, id) > ($5, $6))
ORDER BY created_at, id
LIMIT $7
"""

DELETE_BLOCK = """
DELETE FROM allocation
WHERE id = $1 AND site_id = $2 AND kind = $3
RETURNING id, bed_id
"""

# Every claim on the site's beds that overlaps the window: live ones, and stays that happened
# (a departed booking occupied its bed until its check-out, not its planned end).
OCCUPANCY = """
WITH claim AS (
    SELECT a.id, a.bed_id, a.kind, a.status, a.reason, lower(a.period) AS start,
           CASE WHEN a.status = 'departed'
                THEN greatest(bk.checked_out_at, lower(a.period))
                ELSE upper(a.period) END AS "end"
    FROM allocation a
    LEFT JOIN booking bk ON bk.id = a.id
    -- Through allocation_site_period_idx: the site's claims overlapping the window only.
    WHERE a.site_id = $1 AND a.period && tstzrange($2, $3, '[)')
      AND (allocation_is_live(a.status, a.hold_expires_at, a.respond_by, $4)
           OR a.status = 'departed')
    UNION ALL
    -- Stays checked out after their planned end, in the window only after it: through
    -- booking_checked_out_idx (recent check-outs only).
    SELECT a.id, a.bed_id, a.kind, a.status, a.reason, lower(a.period), bk.checked_out_at
    FROM booking bk
    JOIN allocation a ON a.id = bk.id
    WHERE bk.site_id = $1 AND bk.checked_out_at > $2
      AND a.status = 'departed' AND upper(a.period) <= $2 AND bk.checked_out_at > upper(a.period)
)
-- One row per bed, its claims as the API shows them (timestamps in the session's UTC).
SELECT b.id AS bed_id, b.label, b.room_type, b.wheelchair_accessible, b.max_dependants,
       b.in_service,
       coalesce(
           json_agg(
               json_build_object(
                   'kind', c.kind, 'id', c.id, 'status', c.status, 'start', c.start,
                   'end', c."end", 'reason', c.reason
               )
               ORDER BY c.start
           ) FILTER (WHERE c.id IS NOT NULL),
           '[]'
       ) AS allocations
FROM bed b
LEFT JOIN claim c ON c.bed_id = b.id AND c.start < $3 AND c."end" > $2
WHERE b.site_id = $1 AND b.removed_at IS NULL
GROUP BY b.id
ORDER BY b.created_at, b.id
"""


async def insert_block(
    conn: Connection,
    site_id: UUID,
    bed_id: UUID,
    start: datetime,
    end: datetime,
    reason: str,
    at: datetime,
) -> asyncpg.Record:
    row = await conn.fetchrow(
        INSERT_BLOCK,
        new_id(),
        site_id,
        bed_id,
        start,
        end,
        reason,
        AllocationKind.BLOCK,
        BLOCKED,
        at,
    )
    assert row is not None
    return row


async def find_conflict(
    conn: Connection, bed_id: UUID, start: datetime, end: datetime, at: datetime
) -> asyncpg.Record | None:
    return await conn.fetchrow(FIND_CONFLICT, bed_id, start, end, at)


async def find_future_claim(conn: Connection, bed_id: UUID, at: datetime) -> asyncpg.Record | None:
    return await conn.fetchrow(FIND_FUTURE_CLAIM, bed_id, at)


async def list_blocks(
    conn: Connection,
    site_id: UUID,
    *,
    bed_id: UUID | None,
    start: datetime | None,
    end: datetime | None,
    after: Position | None,
    limit: int,
) -> list[asyncpg.Record]:
    created_at, block_id = after if after is not None else (None, None)
    return await conn.fetch(
        LIST_BLOCKS, site_id, bed_id, start, end, created_at, block_id, limit, AllocationKind.BLOCK
    )


async def delete_block(conn: Connection, site_id: UUID, block_id: UUID) -> asyncpg.Record | None:
    return await conn.fetchrow(DELETE_BLOCK, block_id, site_id, AllocationKind.BLOCK)


async def occupancy(
    conn: Connection, site_id: UUID, start: datetime, end: datetime, at: datetime
) -> list[asyncpg.Record]:
    return await conn.fetch(OCCUPANCY, site_id, start, end, at)
