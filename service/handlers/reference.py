"""Forces and providers: read by every role, written by admins."""

from __future__ import annotations

from aiohttp import web

from service import paging
from service.handlers.common import json_response, path_id, read_body, read_query, reading, writing
from service.models import ForceIn, ForceOut, Page, PageQuery, ProviderIn, ProviderOut
from service.usecases import reference


async def list_forces(request: web.Request) -> web.Response:
    query = read_query(request, PageQuery)
    async with reading(request) as tx:
        rows = await reference.list_forces(tx, paging.decode_text(query.cursor), query.limit + 1)
    items, cursor = paging.split_page(rows, query.limit, lambda row: paging.encode(row["code"]))
    return json_response(
        Page[ForceOut](items=[ForceOut.model_validate(dict(r)) for r in items], next_cursor=cursor)
    )


async def create_force(request: web.Request) -> web.Response:
    body = await read_body(request, ForceIn)
    async with writing(request) as tx:
        row = await reference.create_force(tx, body.code, body.name)
        shown = ForceOut.model_validate(dict(row))
    return json_response(shown, status=201)


async def list_providers(request: web.Request) -> web.Response:
    query = read_query(request, PageQuery)
    async with reading(request) as tx:
        rows = await reference.list_providers(
            tx, paging.decode_position(query.cursor), query.limit + 1
        )
    items, cursor = paging.split_page(rows, query.limit, paging.by_created)
    return json_response(
        Page[ProviderOut](
            items=[ProviderOut.model_validate(dict(r)) for r in items], next_cursor=cursor
        )
    )


async def create_provider(request: web.Request) -> web.Response:
    body = await read_body(request, ProviderIn)
    async with writing(request) as tx:
        row = await reference.create_provider(tx, body.name, body.duty_phone)
        shown = ProviderOut.model_validate(dict(row))
    return json_response(
        shown,
        status=201,
        headers={"Location": f"/v1/providers/{row['id']}"},
    )


async def get_provider(request: web.Request) -> web.Response:
    provider_id = path_id(request, "provider_id", "provider")
    async with reading(request) as tx:
        row = await reference.get_provider(tx, provider_id)
    return json_response(ProviderOut.model_validate(dict(row)))
