"""Security alerts for the national coordinators: raised once per kind, key and hour (or per
booking), counting their repeats; listed by admins."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

import asyncpg

from service.db import Connection
from service.paging import Position

# One row per dedupe key: a repeat within it counts up and moves last_at. `inserted` says
# whether this call raised a new alert (its event is written only then). xmax is 0 on a row
# this statement inserted, and the locking transaction's id on one it updated.
RAISE = """
INSERT INTO security_alert (
    id, kind, first_at, last_at, api_key_id, force_code, provider_id, site_id, booking_id,
    detail, dedupe
)
VALUES ($1, $2, $3, $3, $4, $5, $6, $7, $8, $9, $10)
ON CONFLICT (dedupe) DO UPDATE
SET count = security_alert.count + 1,
    last_at = greatest(security_alert.last_at, excluded.last_at)
RETURNING id, (xmax = 0) AS inserted
"""

LIST = """
SELECT a.id, a.kind, a.first_at, a.last_at, a.count, a.api_key_id AS key_id, k.name AS key_name,
       a.force_code AS force, a.provider_id, a.site_id, a.booking_id, a.detail
FROM security_alert a
LEFT JOIN api_key k ON k.id = a.api_key_id
WHERE ($1::uuid IS NULL OR a.api_key_id = $1)
  AND ($2::text IS NULL OR a.force_code = $2)
  AND ($3::text IS NULL OR a.kind = $3)
  AND ($4::timestamptz IS NULL OR (a.first_at, a.id) > ($4, $5))
ORDER BY a.first_at, a.id
LIMIT $6
"""


async def raise_alert(
    conn: Connection,
    *,
    alert_id: UUID,
    kind: str,
    at: datetime,
    api_key_id: UUID | None,
    force_code: str | None,
    provider_id: UUID | None,
    site_id: UUID | None,
    booking_id: UUID | None,
    detail: str,
    dedupe: str,
) -> asyncpg.Record:
    row = await conn.fetchrow(
        RAISE,
        alert_id,
        kind,
        at,
        api_key_id,
        force_code,
        provider_id,
        site_id,
        booking_id,
        detail,
        dedupe,
    )
    assert row is not None
    return row


async def list_page(
    conn: Connection,
    *,
    api_key_id: UUID | None,
    force_code: str | None,
    kind: str | None,
    after: Position | None,
    limit: int,
) -> list[asyncpg.Record]:
    first_at, alert_id = after if after is not None else (None, None)
    return await conn.fetch(LIST, api_key_id, force_code, kind, first_at, alert_id, limit)
