"""Disclosures of a site's address and phone to officer keys: the budget's ledger."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

import asyncpg

from service.db import Connection

# Whether this key was already shown this booking's site contact (so showing it again spends
# nothing). Through the (booking_id, api_key_id) unique index.
SHOWN_BEFORE = """
SELECT EXISTS (SELECT 1 FROM disclosure WHERE booking_id = $1 AND api_key_id = $2)
"""

# Every new disclosure of a force takes this lock first, to the end of its transaction, so two
# reads of one force (any replica) count one after the other and never overshoot the budget.
LOCK = "SELECT pg_advisory_xact_lock(hashtextextended('disclosure:' || $1::text, 0))"

# Distinct sites disclosed to the key and to its force since $4, and whether the key (or the
# force) has already been shown this site in that time (so it spends no more budget).
# Through disclosure_force_idx: the rows of one force's day.
SPENT = """
SELECT count(DISTINCT site_id) FILTER (WHERE api_key_id = $2) AS by_key,
       count(DISTINCT site_id) AS by_force,
       coalesce(bool_or(site_id = $3 AND api_key_id = $2), false) AS key_knows_site,
       coalesce(bool_or(site_id = $3), false) AS force_knows_site
FROM disclosure
WHERE force_code = $1 AND at > $4
"""

INSERT = """
INSERT INTO disclosure (at, api_key_id, force_code, site_id, booking_id)
VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (booking_id, api_key_id) DO NOTHING
"""

# A booking cancelled soon after its address was shown: each such disclosure is marked once.
MARK_WITHOUT_PLACEMENT = """
UPDATE disclosure SET without_placement_at = $2
WHERE booking_id = $1 AND at >= $3 AND without_placement_at IS NULL
RETURNING api_key_id, force_code, site_id, at
"""


async def shown_before(conn: Connection, booking_id: UUID, api_key_id: UUID) -> bool:
    return bool(await conn.fetchval(SHOWN_BEFORE, booking_id, api_key_id))


async def lock(conn: Connection, force_code: str) -> None:
    await conn.execute(LOCK, force_code)


async def spent(
    conn: Connection, force_code: str, api_key_id: UUID, site_id: UUID, since: datetime
) -> asyncpg.Record:
    row = await conn.fetchrow(SPENT, force_code, api_key_id, site_id, since)
    assert row is not None
    return row


async def insert(
    conn: Connection,
    at: datetime,
    api_key_id: UUID,
    force_code: str,
    site_id: UUID,
    booking_id: UUID,
) -> None:
    await conn.execute(INSERT, at, api_key_id, force_code, site_id, booking_id)


async def mark_without_placement(
    conn: Connection, booking_id: UUID, at: datetime, shown_since: datetime
) -> list[asyncpg.Record]:
    return await conn.fetch(MARK_WITHOUT_PLACEMENT, booking_id, at, shown_since)
