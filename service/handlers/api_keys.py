"""API keys, managed by admins: a new key's secret is shown once, in the creating response."""

from __future__ import annotations

from aiohttp import web

from service import paging
from service.handlers.common import (
    answer,
    json_response,
    no_content,
    path_id,
    read,
    read_body,
    read_query,
    write,
)
from service.models import ApiKeyCreated, ApiKeyIn, ApiKeyOut, Page, PageQuery
from service.usecases import api_keys
from service.usecases.api_keys import IssuedKey, NewKey
from service.usecases.results import ApiKeyShown
from service.usecases.tx import Tx
from service.usecases.uow import Answer, UseCase


async def _new_key(request: web.Request) -> UseCase[Tx, IssuedKey]:
    body = await read_body(request, ApiKeyIn)
    command = NewKey(
        name=body.name, role=body.role, force_code=body.force, provider_id=body.provider_id
    )
    return UseCase(api_keys.create_api_key, key=command)


def _api_key(api_key: ApiKeyShown) -> ApiKeyOut:
    return ApiKeyOut.model_validate(api_key, from_attributes=True)


def _issued(issued: IssuedKey) -> Answer:
    shown = ApiKeyCreated(**_api_key(issued.api_key).model_dump(), key=issued.secret)
    return answer(
        shown,
        status=201,
        headers={"Location": f"/v1/api-keys/{shown.id}"},
        # A replay (same Idempotency-Key) confirms the key exists but cannot show its secret
        # again.
        stored=shown.model_copy(update={"key": None}),
    )


async def create_api_key(request: web.Request) -> web.Response:
    return await write(request, _new_key(request), _issued)


async def list_api_keys(request: web.Request) -> web.Response:
    query = read_query(request, PageQuery)
    page = await read(
        request,
        UseCase(
            api_keys.list_api_keys,
            after=paging.decode_position(query.cursor),
            limit=query.limit,
        ),
    )
    items = [_api_key(k) for k in page.items]
    return json_response(Page[ApiKeyOut](items=items, next_cursor=page.next_cursor))


async def revoke_api_key(request: web.Request) -> web.Response:
    key_id = path_id(request, "key_id", "API key")
    return await write(request, UseCase(api_keys.revoke_api_key, key_id=key_id), no_content)
