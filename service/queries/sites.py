"""Sites: a provider's properties, with their confidential address and location. Rows come
back named as the API names them (the location one object), ready to validate."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

import asyncpg

from service.db import Connection
from service.ids import new_id
from service.paging import Position

# A site as every statement below answers it, named as the API names its fields (the location
# one object): a field added to the API is added here once.
COLUMNS = """
    id, provider_id, name, address, area,
    jsonb_build_object('lat', lat, 'lon', lon) AS location, genders_accepted, languages,
    interpreter_on_call, booking_mode, max_stay_hours, status, phone, version,
    created_at, updated_at, capacity_confirmed_at, address_by_phone_only
"""

INSERT = (
    """
INSERT INTO site (
    id, provider_id, name, address, area, lat, lon, genders_accepted, languages,
    interpreter_on_call, booking_mode, max_stay_hours, status, phone, created_at, updated_at,
    capacity_confirmed_at, address_by_phone_only
)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $15, $15, $16)
RETURNING"""
    + COLUMNS
)

# Every read of sites: the statements below add their WHERE.
SELECT = "SELECT" + COLUMNS + "FROM site\n"

GET = SELECT + "WHERE id = $1"

# A provider sees its own sites; an admin ($1 NULL) sees every site.
LIST = (
    SELECT
    + """WHERE ($1::uuid IS NULL OR provider_id = $1)
  AND ($2::timestamptz IS NULL OR (created_at, id) > ($2, $3))
ORDER BY created_at, id
LIMIT $4
"""
)

PROVIDER_OF = "SELECT provider_id FROM site WHERE id = $1"

# Taken before a site is changed: concurrent PATCHes queue, and the scope, If-Match and
# what-changed checks see the very row that will be changed.
LOCK = SELECT + "WHERE id = $1 FOR UPDATE"

# Absent fields arrive as NULL and keep their value (no site column is nullable).
UPDATE = (
    """
UPDATE site SET
    name = coalesce($2, name),
    address = coalesce($3, address),
    area = coalesce($4, area),
    lat = coalesce($5, lat),
    lon = coalesce($6, lon),
    genders_accepted = coalesce($7, genders_accepted),
    languages = coalesce($8, languages),
    interpreter_on_call = coalesce($9, interpreter_on_call),
    booking_mode = coalesce($10, booking_mode),
    max_stay_hours = coalesce($11, max_stay_hours),
    status = coalesce($12, status),
    phone = coalesce($13, phone),
    address_by_phone_only = coalesce($16, address_by_phone_only),
    version = version + 1,
    updated_at = $14,
    -- $15: when the change also confirms the capacity (a status change); see CONFIRM_CAPACITY.
    capacity_confirmed_at = greatest(capacity_confirmed_at, $15),
    stale_announced_at = CASE WHEN $15::timestamptz IS NULL THEN stale_announced_at END
WHERE id = $1
RETURNING"""
    + COLUMNS
)

# The provider changed the site's capacity (a bed, a block, its status) or declared it still
# accurate: the site is fresh from `$2`, and the next time it goes stale is announced again.
# Never moved back (replicas' clocks may differ a little); the site's version is unchanged (no
# field a PATCH sets changed), so an If-Match read before it still applies.
CONFIRM_CAPACITY = (
    """
UPDATE site
SET capacity_confirmed_at = greatest(capacity_confirmed_at, $2), stale_announced_at = NULL
WHERE id = $1
RETURNING"""
    + COLUMNS
)

# Active sites that have turned stale (confirmed at or before `$2`) and were not announced yet,
# marked announced at `$1`, so each staleness is announced once (a paused or closed site is in
# no search, so its staleness misleads no one; reopening it is a status change, which confirms
# its capacity). Replicas running this at once
# are safe: a row one marks is skipped by the others (it no longer matches once they re-check
# it after the first commits), so each stale site is returned to exactly one of them.
# Up to `$3` active sites that turned stale (confirmed at or before `$2`) since they were last
# announced: marked at `$1`, each with its event `$4` (the site and when its capacity was last
# confirmed, as change_events() in sql/0022 writes it) from the same statement. Replicas
# at once take different sites (SKIP LOCKED), and a marked site is never taken again until its
# capacity is confirmed. Returns how many.
ANNOUNCE_STALE = """
WITH due AS (
    SELECT id FROM site
    WHERE capacity_confirmed_at <= $2 AND stale_announced_at IS NULL AND status = 'active'
    ORDER BY id
    LIMIT $3
    FOR UPDATE SKIP LOCKED
), marked AS (
    UPDATE site s SET stale_announced_at = $1
    FROM due
    WHERE s.id = due.id
    RETURNING s.id, s.provider_id, s.capacity_confirmed_at
), announced AS (
    INSERT INTO event (type, site_id, provider_id, data, occurred_at)
    SELECT $4, m.id, m.provider_id,
           jsonb_build_object('site_id', m.id, 'capacity_confirmed_at', m.capacity_confirmed_at),
           $1
    FROM marked m
    ORDER BY m.id
    RETURNING 1
)
SELECT count(*) FROM announced
"""


async def create(
    conn: Connection,
    provider_id: UUID,
    *,
    name: str,
    address: str,
    area: str,
    lat: float,
    lon: float,
    genders_accepted: list[str],
    languages: list[str],
    interpreter_on_call: bool,
    booking_mode: str,
    max_stay_hours: int,
    status: str,
    phone: str,
    address_by_phone_only: bool = False,
    at: datetime,
) -> asyncpg.Record:
    row = await conn.fetchrow(
        INSERT,
        new_id(),
        provider_id,
        name,
        address,
        area,
        lat,
        lon,
        genders_accepted,
        languages,
        interpreter_on_call,
        booking_mode,
        max_stay_hours,
        status,
        phone,
        at,
        address_by_phone_only,
    )
    assert row is not None
    return row


async def get(conn: Connection, site_id: UUID) -> asyncpg.Record | None:
    return await conn.fetchrow(GET, site_id)


async def list_page(
    conn: Connection, provider_id: UUID | None, after: Position | None, limit: int
) -> list[asyncpg.Record]:
    created_at, site_id = after if after is not None else (None, None)
    return await conn.fetch(LIST, provider_id, created_at, site_id, limit)


async def provider_of(conn: Connection, site_id: UUID) -> UUID | None:
    provider_id: UUID | None = await conn.fetchval(PROVIDER_OF, site_id)
    return provider_id


async def lock(conn: Connection, site_id: UUID) -> asyncpg.Record | None:
    return await conn.fetchrow(LOCK, site_id)


async def update(
    conn: Connection,
    site_id: UUID,
    *,
    at: datetime,
    name: str | None = None,
    address: str | None = None,
    area: str | None = None,
    lat: float | None = None,
    lon: float | None = None,
    genders_accepted: list[str] | None = None,
    languages: list[str] | None = None,
    interpreter_on_call: bool | None = None,
    booking_mode: str | None = None,
    max_stay_hours: int | None = None,
    status: str | None = None,
    phone: str | None = None,
    address_by_phone_only: bool | None = None,
    capacity_confirmed_at: datetime | None = None,
) -> asyncpg.Record:
    """Sets the columns given (None keeps a column as it is), bumps the version; with
    `capacity_confirmed_at`, the change also confirms the site's capacity."""
    row = await conn.fetchrow(
        UPDATE,
        site_id,
        name,
        address,
        area,
        lat,
        lon,
        genders_accepted,
        languages,
        interpreter_on_call,
        booking_mode,
        max_stay_hours,
        status,
        phone,
        at,
        capacity_confirmed_at,
        address_by_phone_only,
    )
    assert row is not None
    return row


async def confirm_capacity(conn: Connection, site_id: UUID, at: datetime) -> asyncpg.Record | None:
    """The site, its capacity confirmed at `at`; None when there is no such site."""
    return await conn.fetchrow(CONFIRM_CAPACITY, site_id, at)


async def announce_stale(
    conn: Connection, at: datetime, stale_before: datetime, event_type: str, limit: int
) -> int:
    """Marks up to `limit` sites that turned stale since they were last announced, each with
    its event; how many."""
    return int(await conn.fetchval(ANNOUNCE_STALE, at, stale_before, limit, event_type))
