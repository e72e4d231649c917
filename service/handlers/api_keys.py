"""API keys, managed by admins: a new key's secret is shown once, in the creating response."""

from __future__ import annotations

from aiohttp import web

from service import keys, paging
from service.handlers.common import json_response, path_id, read_body, read_query, reading, writing
from service.models import ApiKeyCreated, ApiKeyIn, ApiKeyOut, Page, PageQuery
from service.usecases import api_keys
from service.usecases.api_keys import NewKey


async def create_api_key(request: web.Request) -> web.Response:
    body = await read_body(request, ApiKeyIn)
    command = NewKey(
        name=body.name, role=body.role, force_code=body.force, provider_id=body.provider_id
    )
    async with writing(request) as tx:
        issued = await api_keys.create_api_key(tx, command)
        shown = ApiKeyCreated.model_validate({**issued.row, "key": issued.secret})
    # A replay (same Idempotency-Key) confirms the key exists but cannot show its secret again.
    request[keys.REPLAY_BODY] = shown.model_copy(update={"key": None}).model_dump_json().encode()
    return json_response(
        shown,
        status=201,
        headers={"Location": f"/v1/api-keys/{issued.row['id']}"},
    )


async def list_api_keys(request: web.Request) -> web.Response:
    query = read_query(request, PageQuery)
    async with reading(request) as tx:
        rows = await api_keys.list_api_keys(
            tx, paging.decode_position(query.cursor), query.limit + 1
        )
    items, cursor = paging.split_page(rows, query.limit, paging.by_created)
    return json_response(
        Page[ApiKeyOut](
            items=[ApiKeyOut.model_validate(dict(r)) for r in items], next_cursor=cursor
        )
    )


async def revoke_api_key(request: web.Request) -> web.Response:
    key_id = path_id(request, "key_id", "API key")
    async with writing(request) as tx:
        await api_keys.revoke_api_key(tx, key_id)
    return web.Response(status=204)
