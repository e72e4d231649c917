"""Providers' capacity over HTTP: sites, beds, blocks and the per-bed occupancy timeline."""

from __future__ import annotations

from functools import partial

from aiohttp import web

from service import paging
from service.handlers.common import (
    answer,
    etag,
    if_match_allows,
    json_response,
    no_content,
    path_id,
    read,
    read_body,
    read_query,
    write,
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
from service.usecases.results import BedShown, BlockShown, SiteDetail
from service.usecases.tx import Tx
from service.usecases.uow import Answer, UseCase

# --- sites ------------------------------------------------------------------------------------


async def list_sites(request: web.Request) -> web.Response:
    query = read_query(request, PageQuery)
    page = await read(
        request,
        UseCase(
            capacity.list_sites,
            after=paging.decode_position(query.cursor),
            limit=query.limit,
        ),
    )
    items = [_site_out(site) for site in page.items]
    return json_response(Page[SiteOut](items=items, next_cursor=page.next_cursor))


def _site_out(site: SiteDetail) -> SiteOut:
    return SiteOut.model_validate(site, from_attributes=True)


def _site(site: SiteDetail) -> Answer:
    return answer(_site_out(site), headers={"ETag": etag(site.version)})


def _created_site(site: SiteDetail) -> Answer:
    headers = {"Location": f"/v1/sites/{site.id}", "ETag": etag(site.version)}
    return answer(_site_out(site), status=201, headers=headers)


async def _new_site(request: web.Request) -> UseCase[Tx, SiteDetail]:
    body = await read_body(request, SiteIn)
    return UseCase(capacity.create_site, values=body.model_dump())


async def create_site(request: web.Request) -> web.Response:
    return await write(request, _new_site(request), _created_site)


async def get_site(request: web.Request) -> web.Response:
    site_id = path_id(request, "site_id", "site")
    site = await read(request, UseCase(capacity.get_site, site_id=site_id))
    return json_response(_site_out(site), headers={"ETag": etag(site.version)})


async def patch_site(request: web.Request) -> web.Response:
    site_id = path_id(request, "site_id", "site")
    body = await read_body(request, SitePatch)
    patch = UseCase(
        capacity.patch_site,
        site_id=site_id,
        changes=body.model_dump(exclude_unset=True),
        version_ok=partial(if_match_allows, request),
    )
    return await write(request, patch, _site)


async def confirm_capacity(request: web.Request) -> web.Response:
    """POST /v1/sites/{id}/confirm-capacity: the provider's "still accurate", no body."""
    return await write(request, _confirm(request), _site)


async def _confirm(request: web.Request) -> UseCase[Tx, SiteDetail]:
    site_id = path_id(request, "site_id", "site")
    return UseCase(capacity.confirm_capacity, site_id=site_id)


# --- beds -------------------------------------------------------------------------------------


async def list_beds(request: web.Request) -> web.Response:
    site_id = path_id(request, "site_id", "site")
    query = read_query(request, PageQuery)
    page = await read(
        request,
        UseCase(
            capacity.list_beds,
            site_id=site_id,
            after=paging.decode_position(query.cursor),
            limit=query.limit,
        ),
    )
    items = [_bed_out(bed) for bed in page.items]
    return json_response(Page[BedOut](items=items, next_cursor=page.next_cursor))


def _bed_out(bed: BedShown) -> BedOut:
    return BedOut.model_validate(bed, from_attributes=True)


def _bed(bed: BedShown) -> Answer:
    return answer(_bed_out(bed), headers={"ETag": etag(bed.version)})


async def _new_bed(request: web.Request) -> UseCase[Tx, BedShown]:
    site_id = path_id(request, "site_id", "site")
    body = await read_body(request, BedIn)
    return UseCase(capacity.create_bed, site_id=site_id, values=body.model_dump())


def _created_bed(bed: BedShown) -> Answer:
    headers = {
        "Location": f"/v1/sites/{bed.site_id}/beds/{bed.id}",
        "ETag": etag(bed.version),
    }
    return answer(_bed_out(bed), status=201, headers=headers)


async def create_bed(request: web.Request) -> web.Response:
    return await write(request, _new_bed(request), _created_bed)


async def patch_bed(request: web.Request) -> web.Response:
    site_id = path_id(request, "site_id", "site")
    bed_id = path_id(request, "bed_id", "bed")
    body = await read_body(request, BedPatch)
    patch = UseCase(
        capacity.patch_bed,
        site_id=site_id,
        bed_id=bed_id,
        changes=body.model_dump(exclude_unset=True),
        version_ok=partial(if_match_allows, request),
    )
    return await write(request, patch, _bed)


async def delete_bed(request: web.Request) -> web.Response:
    site_id = path_id(request, "site_id", "site")
    bed_id = path_id(request, "bed_id", "bed")
    delete = UseCase(
        capacity.delete_bed,
        site_id=site_id,
        bed_id=bed_id,
        version_ok=partial(if_match_allows, request),
    )
    return await write(request, delete, no_content)


# --- blocks -----------------------------------------------------------------------------------


async def list_blocks(request: web.Request) -> web.Response:
    site_id = path_id(request, "site_id", "site")
    query = read_query(request, BlockListQuery)
    page = await read(
        request,
        UseCase(
            capacity.list_blocks,
            site_id=site_id,
            bed_id=query.bed_id,
            start=query.start,
            end=query.end,
            after=paging.decode_position(query.cursor),
            limit=query.limit,
        ),
    )
    items = [_block_out(block) for block in page.items]
    return json_response(Page[BlockOut](items=items, next_cursor=page.next_cursor))


def _block_out(block: BlockShown) -> BlockOut:
    return BlockOut.model_validate(block, from_attributes=True)


async def _new_block(request: web.Request) -> UseCase[Tx, BlockShown]:
    site_id = path_id(request, "site_id", "site")
    body = await read_body(request, BlockIn)
    return UseCase(
        capacity.create_block, site_id=site_id, block=capacity.NewBlock(**body.model_dump())
    )


async def create_block(request: web.Request) -> web.Response:
    def created(block: BlockShown) -> Answer:
        shown = _block_out(block)
        site_id = path_id(request, "site_id", "site")
        return answer(
            shown, status=201, headers={"Location": f"/v1/sites/{site_id}/blocks/{shown.id}"}
        )

    return await write(request, _new_block(request), created)


async def delete_block(request: web.Request) -> web.Response:
    site_id = path_id(request, "site_id", "site")
    block_id = path_id(request, "block_id", "block")
    delete = UseCase(capacity.delete_block, site_id=site_id, block_id=block_id)
    return await write(request, delete, no_content)


# --- occupancy --------------------------------------------------------------------------------


async def occupancy(request: web.Request) -> web.Response:
    site_id = path_id(request, "site_id", "site")
    query = read_query(request, WindowQuery)
    timeline = await read(
        request, UseCase(capacity.occupancy, site_id=site_id, start=query.start, end=query.end)
    )
    return json_response(Occupancy.model_validate(timeline, from_attributes=True))
