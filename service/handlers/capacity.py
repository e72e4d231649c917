"""Providers' capacity: sites, beds, blocks and the per-bed occupancy timeline."""

from __future__ import annotations

from uuid import UUID

import asyncpg
from aiohttp import web

from service import paging
from service.db import Connection
from service.domain import claims
from service.domain.access import Principal, check_provider_scope, require_role
from service.domain.bookings import lock_bed_for_claim
from service.errors import Conflict, NotFound, PreconditionFailed
from service.handlers.common import (
    connection,
    etag,
    if_match_allows,
    json_response,
    now,
    path_id,
    principal,
    read_body,
    read_query,
    transaction,
)
from service.models import (
    BedIn,
    BedOut,
    BedPatch,
    BlockIn,
    BlockListQuery,
    BlockOut,
    LocationOut,
    Occupancy,
    OccupancyBed,
    OccupancyEntry,
    Page,
    PageQuery,
    SiteIn,
    SiteOut,
    SitePatch,
    WindowQuery,
)
from service.queries import allocations, beds, sites

# --- presenters -----------------------------------------------------------------------------


def site_out(row: asyncpg.Record) -> SiteOut:
    return SiteOut(
        id=row["id"],
        provider_id=row["provider_id"],
        name=row["name"],
        address=row["address"],
        area=row["area"],
        location=LocationOut(lat=row["lat"], lon=row["lon"]),
        genders_accepted=row["genders_accepted"],
        languages=row["languages"],
        interpreter_on_call=row["interpreter_on_call"],
        booking_mode=row["booking_mode"],
        max_stay_hours=row["max_stay_hours"],
        status=row["status"],
        phone=row["phone"],
        version=row["version"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def bed_out(row: asyncpg.Record) -> BedOut:
    return BedOut(
        id=row["id"],
        site_id=row["site_id"],
        label=row["label"],
        room_type=row["room_type"],
        wheelchair_accessible=row["wheelchair_accessible"],
        max_dependants=row["max_dependants"],
        in_service=row["in_service"],
        version=row["version"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def block_out(row: asyncpg.Record) -> BlockOut:
    return BlockOut(
        id=row["id"],
        bed_id=row["bed_id"],
        start=row["start"],
        end=row["end"],
        reason=row["reason"],
        created_at=row["created_at"],
    )


# --- scope ------------------------------------------------------------------------------------


async def _own_site(conn: Connection, who: Principal, site_id: UUID) -> None:
    """404 unless the site exists and is in the caller's scope (admins see every site)."""
    provider_id = await sites.provider_of(conn, site_id)
    if provider_id is None:
        raise NotFound("site not found")
    check_provider_scope(who, provider_id, "site")


def _readers(request: web.Request) -> Principal:
    who = principal(request)
    require_role(who, "provider", "admin")
    return who


def _writer(request: web.Request) -> Principal:
    who = principal(request)
    require_role(who, "provider")
    return who


def _check_version(request: web.Request, current: int) -> None:
    if not if_match_allows(request, current):
        raise PreconditionFailed(
            f"If-Match does not name the current version, {current}; "
            "read it again and reapply your change",
            extra={"current_version": current},
        )


# --- sites ------------------------------------------------------------------------------------


async def list_sites(request: web.Request) -> web.Response:
    who = _readers(request)
    query = read_query(request, PageQuery)
    async with connection(request) as conn:
        rows = await sites.list_page(
            conn, who.provider_id, paging.decode_position(query.cursor), query.limit + 1
        )
    items, cursor = paging.split_page(rows, query.limit, paging.by_created)
    return json_response(Page[SiteOut](items=[site_out(r) for r in items], next_cursor=cursor))


async def create_site(request: web.Request) -> web.Response:
    who = _writer(request)
    body = await read_body(request, SiteIn)
    assert who.provider_id is not None
    async with transaction(request) as conn:
        row = await sites.create(conn, who.provider_id, body)
    return json_response(
        site_out(row),
        status=201,
        headers={"Location": f"/v1/sites/{row['id']}", "ETag": etag(row["version"])},
    )


async def get_site(request: web.Request) -> web.Response:
    who = _readers(request)
    site_id = path_id(request, "site_id", "site")
    async with connection(request) as conn:
        row = await sites.get(conn, site_id)
    if row is None:
        raise NotFound("site not found")
    check_provider_scope(who, row["provider_id"], "site")
    return json_response(site_out(row), headers={"ETag": etag(row["version"])})


async def patch_site(request: web.Request) -> web.Response:
    who = _writer(request)
    site_id = path_id(request, "site_id", "site")
    body = await read_body(request, SitePatch)
    async with transaction(request) as conn:
        current = await sites.lock(conn, site_id)
        if current is None:
            raise NotFound("site not found")
        check_provider_scope(who, current["provider_id"], "site")
        _check_version(request, current["version"])
        row = await sites.update(conn, site_id, body)
    return json_response(site_out(row), headers={"ETag": etag(row["version"])})


# --- beds -------------------------------------------------------------------------------------


async def list_beds(request: web.Request) -> web.Response:
    who = _readers(request)
    site_id = path_id(request, "site_id", "site")
    query = read_query(request, PageQuery)
    async with connection(request) as conn:
        await _own_site(conn, who, site_id)
        rows = await beds.list_page(
            conn, site_id, paging.decode_position(query.cursor), query.limit + 1
        )
    items, cursor = paging.split_page(rows, query.limit, paging.by_created)
    return json_response(Page[BedOut](items=[bed_out(r) for r in items], next_cursor=cursor))


def _label_taken(label: str) -> Conflict:
    return Conflict(f"this site already has a bed labelled {label!r}", slug="already-exists")


async def create_bed(request: web.Request) -> web.Response:
    who = _writer(request)
    site_id = path_id(request, "site_id", "site")
    body = await read_body(request, BedIn)
    try:
        async with transaction(request) as conn:
            await _own_site(conn, who, site_id)
            row = await beds.create(conn, site_id, body)
    except asyncpg.UniqueViolationError:
        raise _label_taken(body.label) from None
    return json_response(
        bed_out(row),
        status=201,
        headers={"Location": f"/v1/sites/{site_id}/beds/{row['id']}", "ETag": etag(row["version"])},
    )


async def patch_bed(request: web.Request) -> web.Response:
    who = _writer(request)
    site_id = path_id(request, "site_id", "site")
    bed_id = path_id(request, "bed_id", "bed")
    body = await read_body(request, BedPatch)
    try:
        async with transaction(request) as conn:
            await _own_site(conn, who, site_id)
            current = await beds.lock(conn, site_id, bed_id)
            if current is None:
                raise NotFound("bed not found")
            _check_version(request, current["version"])
            row = await beds.update(conn, bed_id, body)
    except asyncpg.UniqueViolationError:
        raise _label_taken(body.label or "") from None
    return json_response(bed_out(row), headers={"ETag": etag(row["version"])})


async def delete_bed(request: web.Request) -> web.Response:
    who = _writer(request)
    site_id = path_id(request, "site_id", "site")
    bed_id = path_id(request, "bed_id", "bed")
    at = now(request)
    async with transaction(request) as conn:
        await _own_site(conn, who, site_id)
        current = await beds.lock(conn, site_id, bed_id)
        if current is None:
            raise NotFound("bed not found")
        _check_version(request, current["version"])
        claim = await allocations.find_future_claim(conn, bed_id, at)
        if claim is not None:
            raise claims.overlap(
                claim, slug="bed-in-use", detail="the bed is still claimed; end that claim first"
            )
        await beds.retire(conn, bed_id, at)
    return web.Response(status=204)


# --- blocks -----------------------------------------------------------------------------------


async def list_blocks(request: web.Request) -> web.Response:
    who = _readers(request)
    site_id = path_id(request, "site_id", "site")
    query = read_query(request, BlockListQuery)
    async with connection(request) as conn:
        await _own_site(conn, who, site_id)
        rows = await allocations.list_blocks(
            conn,
            site_id,
            bed_id=query.bed_id,
            start=query.start,
            end=query.end,
            after=paging.decode_position(query.cursor),
            limit=query.limit + 1,
        )
    items, cursor = paging.split_page(rows, query.limit, paging.by_created)
    return json_response(Page[BlockOut](items=[block_out(r) for r in items], next_cursor=cursor))


async def create_block(request: web.Request) -> web.Response:
    who = _writer(request)
    site_id = path_id(request, "site_id", "site")
    body = await read_body(request, BlockIn)
    at = now(request)
    async with transaction(request) as conn:
        await _own_site(conn, who, site_id)
        if await beds.get(conn, site_id, body.bed_id) is None:
            raise NotFound("bed not found at this site")
        try:
            # A savepoint, so the transaction survives the exclusion violation long enough to
            # look up and name what is in the way.
            async with conn.transaction():
                await lock_bed_for_claim(conn, body.bed_id, at)
                row = await allocations.insert_block(
                    conn, site_id, body.bed_id, body.start, body.end, body.reason
                )
        except asyncpg.ExclusionViolationError:
            claim = await allocations.find_conflict(conn, body.bed_id, body.start, body.end, at)
            raise claims.overlap(
                claim, slug="overlap", detail="the bed is already claimed in that period"
            ) from None
    return json_response(
        block_out(row),
        status=201,
        headers={"Location": f"/v1/sites/{site_id}/blocks/{row['id']}"},
    )


async def delete_block(request: web.Request) -> web.Response:
    who = _writer(request)
    site_id = path_id(request, "site_id", "site")
    block_id = path_id(request, "block_id", "block")
    async with transaction(request) as conn:
        await _own_site(conn, who, site_id)
        row = await allocations.delete_block(conn, site_id, block_id)
    if row is None:
        raise NotFound("block not found")
    return web.Response(status=204)


# --- occupancy --------------------------------------------------------------------------------


async def occupancy(request: web.Request) -> web.Response:
    who = _readers(request)
    site_id = path_id(request, "site_id", "site")
    query = read_query(request, WindowQuery)
    async with connection(request) as conn:
        await _own_site(conn, who, site_id)
        rows = await allocations.occupancy(conn, site_id, query.start, query.end, now(request))
    timeline: dict[UUID, OccupancyBed] = {}
    for row in rows:
        bed = timeline.get(row["bed_id"])
        if bed is None:
            bed = timeline[row["bed_id"]] = OccupancyBed(
                bed_id=row["bed_id"],
                label=row["label"],
                room_type=row["room_type"],
                wheelchair_accessible=row["wheelchair_accessible"],
                max_dependants=row["max_dependants"],
                in_service=row["in_service"],
                allocations=[],
            )
        if row["id"] is not None:
            bed.allocations.append(
                OccupancyEntry(
                    kind=row["kind"],
                    id=row["id"],
                    status=row["status"],
                    start=row["start"],
                    end=row["end"],
                    reason=row["reason"],
                )
            )
    return json_response(
        Occupancy(site_id=site_id, start=query.start, end=query.end, beds=list(timeline.values()))
    )
