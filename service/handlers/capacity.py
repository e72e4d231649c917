"""Providers' capacity over HTTP: sites, beds, blocks and the per-bed occupancy timeline."""

from __future__ import annotations

from datetime import timedelta
from functools import partial

from aiohttp import web

from service import keys, paging
from service.handlers.common import (
    etag,
    if_match_allows,
    json_response,
    path_id,
    read_body,
    read_query,
    reading,
    writing,
)
from service.models import (
    BedIn,
    BedOut,
    BedPatch,
    BlockIn,
    BlockListQuery,
    BlockOut,
    Occupancy,
    Page,
    PageQuery,
    SiteIn,
    SiteOut,
    SitePatch,
    WindowQuery,
)
from service.usecases import capacity

# --- sites ------------------------------------------------------------------------------------


def _stale_after(request: web.Request) -> timedelta:
    return timedelta(hours=request.app[keys.SETTINGS].stale_after_hours)


async def list_sites(request: web.Request) -> web.Response:
    query = read_query(request, PageQuery)
    async with reading(request) as tx:
        page = await capacity.list_sites(
            tx,
            after=paging.decode_position(query.cursor),
            limit=query.limit,
            stale_after=_stale_after(request),
        )
    return json_response(
        Page[SiteOut](
            items=[SiteOut.model_validate(r) for r in page.items],
            next_cursor=page.next_cursor,
        )
    )


async def create_site(request: web.Request) -> web.Response:
    body = await read_body(request, SiteIn)
    async with writing(request) as tx:
        row = await capacity.create_site(tx, body.model_dump(), stale_after=_stale_after(request))
        shown = SiteOut.model_validate(row)
    return json_response(
        shown,
        status=201,
        headers={"Location": f"/v1/sites/{row['id']}", "ETag": etag(row["version"])},
    )


async def get_site(request: web.Request) -> web.Response:
    site_id = path_id(request, "site_id", "site")
    async with reading(request) as tx:
        row = await capacity.get_site(tx, site_id, stale_after=_stale_after(request))
    return json_response(SiteOut.model_validate(row), headers={"ETag": etag(row["version"])})


async def patch_site(request: web.Request) -> web.Response:
    site_id = path_id(request, "site_id", "site")
    body = await read_body(request, SitePatch)
    async with writing(request) as tx:
        row = await capacity.patch_site(
            tx,
            site_id,
            body.model_dump(exclude_unset=True),
            partial(if_match_allows, request),
            stale_after=_stale_after(request),
        )
        shown = SiteOut.model_validate(row)
    return json_response(shown, headers={"ETag": etag(row["version"])})


async def confirm_capacity(request: web.Request) -> web.Response:
    """POST /v1/sites/{id}/confirm-capacity: the provider's "still accurate", no body."""
    site_id = path_id(request, "site_id", "site")
    async with writing(request) as tx:
        row = await capacity.confirm_capacity(tx, site_id, stale_after=_stale_after(request))
        shown = SiteOut.model_validate(row)
    return json_response(shown, headers={"ETag": etag(row["version"])})


# --- beds -------------------------------------------------------------------------------------


async def list_beds(request: web.Request) -> web.Response:
    site_id = path_id(request, "site_id", "site")
    query = read_query(request, PageQuery)
    async with reading(request) as tx:
        page = await capacity.list_beds(
            tx, site_id, after=paging.decode_position(query.cursor), limit=query.limit
        )
    return json_response(
        Page[BedOut](
            items=[BedOut.model_validate(dict(r)) for r in page.items],
            next_cursor=page.next_cursor,
        )
    )


async def create_bed(request: web.Request) -> web.Response:
    site_id = path_id(request, "site_id", "site")
    body = await read_body(request, BedIn)
    async with writing(request) as tx:
        row = await capacity.create_bed(tx, site_id, body.model_dump())
        shown = BedOut.model_validate(dict(row))
    return json_response(
        shown,
        status=201,
        headers={"Location": f"/v1/sites/{site_id}/beds/{row['id']}", "ETag": etag(row["version"])},
    )


async def patch_bed(request: web.Request) -> web.Response:
    site_id = path_id(request, "site_id", "site")
    bed_id = path_id(request, "bed_id", "bed")
    body = await read_body(request, BedPatch)
    async with writing(request) as tx:
        row = await capacity.patch_bed(
            tx,
            site_id,
            bed_id,
            body.model_dump(exclude_unset=True),
            partial(if_match_allows, request),
        )
        shown = BedOut.model_validate(dict(row))
    return json_response(shown, headers={"ETag": etag(row["version"])})


async def delete_bed(request: web.Request) -> web.Response:
    site_id = path_id(request, "site_id", "site")
    bed_id = path_id(request, "bed_id", "bed")
    async with writing(request) as tx:
        await capacity.delete_bed(tx, site_id, bed_id, partial(if_match_allows, request))
    return web.Response(status=204)


# --- blocks -----------------------------------------------------------------------------------


async def list_blocks(request: web.Request) -> web.Response:
    site_id = path_id(request, "site_id", "site")
    query = read_query(request, BlockListQuery)
    async with reading(request) as tx:
        page = await capacity.list_blocks(
            tx,
            site_id,
            bed_id=query.bed_id,
            start=query.start,
            end=query.end,
            after=paging.decode_position(query.cursor),
            limit=query.limit,
        )
    return json_response(
        Page[BlockOut](
            items=[BlockOut.model_validate(dict(r)) for r in page.items],
            next_cursor=page.next_cursor,
        )
    )


async def create_block(request: web.Request) -> web.Response:
    site_id = path_id(request, "site_id", "site")
    body = await read_body(request, BlockIn)
    async with writing(request) as tx:
        row = await capacity.create_block(tx, site_id, capacity.NewBlock(**body.model_dump()))
        shown = BlockOut.model_validate(dict(row))
    return json_response(
        shown,
        status=201,
        headers={"Location": f"/v1/sites/{site_id}/blocks/{row['id']}"},
    )


async def delete_block(request: web.Request) -> web.Response:
    site_id = path_id(request, "site_id", "site")
    block_id = path_id(request, "block_id", "block")
    async with writing(request) as tx:
        await capacity.delete_block(tx, site_id, block_id)
    return web.Response(status=204)


# --- occupancy --------------------------------------------------------------------------------


async def occupancy(request: web.Request) -> web.Response:
    site_id = path_id(request, "site_id", "site")
    query = read_query(request, WindowQuery)
    async with reading(request) as tx:
        timeline = await capacity.occupancy(tx, site_id, query.start, query.end)
    return json_response(Occupancy.model_validate(timeline))
