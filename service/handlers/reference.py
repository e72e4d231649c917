"""Forces and providers: read by every role, written by admins."""

from __future__ import annotations

import asyncpg
from aiohttp import web

from service import paging
from service.domain.access import require_role
from service.errors import Conflict, NotFound
from service.handlers.common import (
    connection,
    json_response,
    path_id,
    principal,
    read_body,
    read_query,
    transaction,
)
from service.models import ForceIn, ForceOut, Page, PageQuery, ProviderIn, ProviderOut
from service.queries import reference


def _force(row: asyncpg.Record) -> ForceOut:
    return ForceOut(code=row["code"], name=row["name"])


def _provider(row: asyncpg.Record) -> ProviderOut:
    return ProviderOut(id=row["id"], name=row["name"])


async def list_forces(request: web.Request) -> web.Response:
    query = read_query(request, PageQuery)
    async with connection(request) as conn:
        rows = await reference.list_forces(conn, paging.decode_text(query.cursor), query.limit + 1)
    items, cursor = paging.split_page(rows, query.limit, lambda row: paging.encode(row["code"]))
    return json_response(Page[ForceOut](items=[_force(r) for r in items], next_cursor=cursor))


async def create_force(request: web.Request) -> web.Response:
    require_role(principal(request), "admin")
    body = await read_body(request, ForceIn)
    try:
        async with transaction(request) as conn:
            row = await reference.create_force(conn, body.code, body.name)
    except asyncpg.UniqueViolationError:
        raise Conflict(f"force {body.code!r} already exists", slug="already-exists") from None
    return json_response(_force(row), status=201)


async def list_providers(request: web.Request) -> web.Response:
    query = read_query(request, PageQuery)
    async with connection(request) as conn:
        rows = await reference.list_providers(
            conn, paging.decode_position(query.cursor), query.limit + 1
        )
    items, cursor = paging.split_page(rows, query.limit, paging.by_created)
    return json_response(Page[ProviderOut](items=[_provider(r) for r in items], next_cursor=cursor))


async def create_provider(request: web.Request) -> web.Response:
    require_role(principal(request), "admin")
    body = await read_body(request, ProviderIn)
    try:
        async with transaction(request) as conn:
            row = await reference.create_provider(conn, body.name)
    except asyncpg.UniqueViolationError:
        raise Conflict(
            f"a provider named {body.name!r} already exists", slug="already-exists"
        ) from None
    return json_response(
        _provider(row), status=201, headers={"Location": f"/v1/providers/{row['id']}"}
    )


async def get_provider(request: web.Request) -> web.Response:
    provider_id = path_id(request, "provider_id", "provider")
    async with connection(request) as conn:
        row = await reference.get_provider(conn, provider_id)
    if row is None:
        raise NotFound("provider not found")
    return json_response(_provider(row))
