"""API keys: create, list, revoke, and the per-request lookup. Rows name their columns as
the API does (`force`)."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

import asyncpg

from service.db import Connection
from service.ids import new_id
from service.paging import Position

# One round trip per request: find the live key and, at most once a minute, note its use
# (`$2` is the service clock's now, as for every time the service writes).
AUTHENTICATE = """
WITH found AS (
    SELECT id, role, force_code, provider_id, last_used_at
    FROM api_key
    WHERE key_hash = $1 AND revoked_at IS NULL
), touched AS (
    UPDATE api_key k SET last_used_at = $2::timestamptz
    FROM found
    WHERE k.id = found.id
      AND (found.last_used_at IS NULL OR found.last_used_at < $2::timestamptz - interval '1 minute')
)
SELECT id, role, force_code, provider_id FROM found
"""

INSERT = """
INSERT INTO api_key (id, name, role, force_code, provider_id, key_hash, prefix, created_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
RETURNING id, name, role, force_code AS force, provider_id, prefix, created_at, last_used_at,
          revoked_at
"""

INSERT_IF_ABSENT = """
INSERT INTO api_key (id, name, role, force_code, provider_id, key_hash, prefix, created_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
ON CONFLICT (key_hash) DO NOTHING
RETURNING id
"""

EXISTS = "SELECT EXISTS (SELECT 1 FROM api_key WHERE key_hash = $1)"
IS_LIVE = "SELECT EXISTS (SELECT 1 FROM api_key WHERE key_hash = $1 AND revoked_at IS NULL)"
IS_LIVE_ID = "SELECT EXISTS (SELECT 1 FROM api_key WHERE id = $1 AND revoked_at IS NULL)"

LIST = """
SELECT id, name, role, force_code AS force, provider_id, prefix, created_at, last_used_at,
       revoked_at
FROM api_key
WHERE ($1::timestamptz IS NULL OR (created_at, id) > ($1, $2))
ORDER BY created_at, id
LIMIT $3
"""

# Revoking a revoked key keeps its first revocation time; `revoked_now` says whether this
# call changed anything (only a change is audited).
REVOKE = """
UPDATE api_key k SET revoked_at = coalesce(k.revoked_at, $2)
FROM (SELECT id, revoked_at FROM api_key WHERE id = $1 FOR UPDATE) old_key
WHERE k.id = old_key.id
RETURNING k.id, k.name, k.role, k.force_code AS force, k.provider_id, k.prefix, k.created_at,
          k.last_used_at, k.revoked_at, old_key.revoked_at IS NULL AS revoked_now
"""


async def authenticate(conn: Connection, key_hash: bytes, at: datetime) -> asyncpg.Record | None:
    return await conn.fetchrow(AUTHENTICATE, key_hash, at)


async def create(
    conn: Connection,
    *,
    name: str,
    role: str,
    force_code: str | None,
    provider_id: UUID | None,
    key_hash: bytes,
    prefix: str,
    at: datetime,
) -> asyncpg.Record:
    row = await conn.fetchrow(
        INSERT, new_id(), name, role, force_code, provider_id, key_hash, prefix, at
    )
    assert row is not None
    return row


async def create_if_absent(
    conn: Connection,
    *,
    name: str,
    role: str,
    force_code: str | None,
    provider_id: UUID | None,
    key_hash: bytes,
    prefix: str,
    at: datetime,
) -> UUID | None:
    """For the demo keys, whose secrets are fixed: seeding twice adds nothing. The new key's
    id, or None when it was there already."""
    made: UUID | None = await conn.fetchval(
        INSERT_IF_ABSENT, new_id(), name, role, force_code, provider_id, key_hash, prefix, at
    )
    return made


async def exists(conn: Connection, key_hash: bytes) -> bool:
    return bool(await conn.fetchval(EXISTS, key_hash))


async def is_live(conn: Connection, key_hash: bytes) -> bool:
    return bool(await conn.fetchval(IS_LIVE, key_hash))


async def list_page(conn: Connection, after: Position | None, limit: int) -> list[asyncpg.Record]:
    created_at, key_id = after if after is not None else (None, None)
    return await conn.fetch(LIST, created_at, key_id, limit)


async def revoke(conn: Connection, key_id: UUID, at: datetime) -> asyncpg.Record | None:
    """The key as revoked (with `revoked_now`), or None when no key has that id."""
    return await conn.fetchrow(REVOKE, key_id, at)


async def is_live_id(conn: Connection, key_id: UUID) -> bool:
    """Whether the key is still live (a long poll checks again after waiting)."""
    return bool(await conn.fetchval(IS_LIVE_ID, key_id))
