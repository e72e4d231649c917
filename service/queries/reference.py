"""Forces and providers: reference data the admins keep."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

import asyncpg

from service.db import Connection
from service.ids import new_id
from service.paging import Position

# A code or name already taken inserts nothing and returns no row: the use case answers 409
# without an exception aborting the caller's transaction.
INSERT_FORCE = """
INSERT INTO force (code, name, created_at) VALUES ($1, $2, $3)
ON CONFLICT DO NOTHING
RETURNING code, name
"""

UPSERT_FORCE = """
INSERT INTO force (code, name, created_at) VALUES ($1, $2, $3)
ON CONFLICT (code) DO NOTHING
RETURNING code
"""

LIST_FORCES = """
SELECT code, name FROM force
WHERE ($1::text IS NULL OR code > $1)
ORDER BY code
LIMIT $2
"""

FORCE_EXISTS = "SELECT EXISTS (SELECT 1 FROM force WHERE code = $1)"

INSERT_PROVIDER = """
INSERT INTO provider (id, name, duty_phone, created_at) VALUES ($1, $2, $4, $3)
ON CONFLICT DO NOTHING
RETURNING id, name, duty_phone, created_at
"""

LIST_PROVIDERS = """
SELECT id, name, duty_phone, created_at FROM provider
WHERE ($1::timestamptz IS NULL OR (created_at, id) > ($1, $2))
ORDER BY created_at, id
LIMIT $3
"""

GET_PROVIDER = "SELECT id, name, duty_phone, created_at FROM provider WHERE id = $1"

FIND_PROVIDER_BY_NAME = (
    "SELECT id, name, duty_phone, created_at FROM provider WHERE lower(name) = lower($1)"
)


async def create_force(
    conn: Connection, code: str, name: str, *, at: datetime
) -> asyncpg.Record | None:
    """The new force, or None when its code is taken."""
    return await conn.fetchrow(INSERT_FORCE, code, name, at)


async def ensure_force(conn: Connection, code: str, name: str, *, at: datetime) -> bool:
    """For the demo seed only: a force that may be there already; whether it was made."""
    return await conn.fetchval(UPSERT_FORCE, code, name, at) is not None


async def list_forces(conn: Connection, after: str | None, limit: int) -> list[asyncpg.Record]:
    return await conn.fetch(LIST_FORCES, after, limit)


async def force_exists(conn: Connection, code: str) -> bool:
    return bool(await conn.fetchval(FORCE_EXISTS, code))


async def create_provider(
    conn: Connection, name: str, *, at: datetime, duty_phone: str | None = None
) -> asyncpg.Record | None:
    """The new provider, or None when another has that name (names are unique, any case)."""
    return await conn.fetchrow(INSERT_PROVIDER, new_id(), name, at, duty_phone)


async def list_providers(
    conn: Connection, after: Position | None, limit: int
) -> list[asyncpg.Record]:
    created_at, provider_id = after if after is not None else (None, None)
    return await conn.fetch(LIST_PROVIDERS, created_at, provider_id, limit)


async def get_provider(conn: Connection, provider_id: UUID) -> asyncpg.Record | None:
    return await conn.fetchrow(GET_PROVIDER, provider_id)


async def find_provider_by_name(conn: Connection, name: str) -> asyncpg.Record | None:
    return await conn.fetchrow(FIND_PROVIDER_BY_NAME, name)
