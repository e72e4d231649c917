"""Stored answers for Idempotency-Key."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

import asyncpg

from service.db import Connection

# A transaction-scoped lock per (caller, key): a second request with the same key while the
# first is still running fails to take it and is told so (409), instead of running twice.
TRY_LOCK = "SELECT pg_try_advisory_xact_lock(hashtextextended($1::uuid::text || ':' || $2, 0))"

FIND = """
SELECT request_hash, response_status, response_type, response_headers, response_body,
       booking_id
FROM idempotency_key
WHERE api_key_id = $1 AND key = $2 AND created_at > $3
"""

# A row older than the retention window may still be there (purge runs later): replace it.
STORE = """
INSERT INTO idempotency_key (
    api_key_id, key, request_hash, response_status, response_type, response_headers,
    response_body, created_at, booking_id
)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
ON CONFLICT (api_key_id, key) DO UPDATE SET
    request_hash = excluded.request_hash,
    response_status = excluded.response_status,
    response_type = excluded.response_type,
    response_headers = excluded.response_headers,
    response_body = excluded.response_body,
    created_at = excluded.created_at,
    booking_id = excluded.booking_id
"""

# A batch of stored answers past the window (oldest first, through idempotency_key_age_idx);
# rows another transaction holds are left for the next batch.
PURGE = """
DELETE FROM idempotency_key k
USING (
    SELECT api_key_id, key FROM idempotency_key
    WHERE created_at <= $1
    ORDER BY created_at
    LIMIT $2
    FOR UPDATE SKIP LOCKED
) old
WHERE k.api_key_id = old.api_key_id AND k.key = old.key
"""


async def try_lock(conn: Connection, api_key_id: UUID, key: str) -> bool:
    return bool(await conn.fetchval(TRY_LOCK, api_key_id, key))


async def find(
    conn: Connection, api_key_id: UUID, key: str, newer_than: datetime
) -> asyncpg.Record | None:
    return await conn.fetchrow(FIND, api_key_id, key, newer_than)


async def store(
    conn: Connection,
    api_key_id: UUID,
    key: str,
    request_hash: bytes,
    status: int,
    content_type: str,
    headers: dict[str, str],
    body: bytes,
    at: datetime,
    booking_id: UUID | None = None,
) -> None:
    await conn.execute(
        STORE, api_key_id, key, request_hash, status, content_type, headers, body, at, booking_id
    )


async def purge(conn: Connection, older_than: datetime, limit: int) -> int:
    """Deletes up to `limit` stored answers created by `older_than`; how many went."""
    result = await conn.execute(PURGE, older_than, limit)
    return int(result.split()[-1])
