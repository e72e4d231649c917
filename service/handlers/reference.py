"""Forces and providers: read by every role, written by admins."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from service import paging
from service.handlers.common import (
    answer,
    json_response,
    path_id,
    read,
    read_body,
    read_query,
    write,
)
from service.models import ForceIn, ForceOut, Page, PageQuery, ProviderIn, ProviderOut
from service.usecases import reference
from service.usecases.tx import Tx
from service.usecases.uow import Answer, UseCase


async def list_forces(request: web.Request) -> web.Response:
    query = read_query(request, PageQuery)
    page = await read(
        request,
        UseCase(reference.list_forces, after=paging.decode_text(query.cursor), limit=query.limit),
    )
    items = [ForceOut.model_validate(dict(r)) for r in page.items]
    return json_response(Page[ForceOut](items=items, next_cursor=page.next_cursor))


async def _new_force(request: web.Request) -> UseCase[Tx, Any]:
    body = await read_body(request, ForceIn)
    return UseCase(reference.create_force, code=body.code, name=body.name)


async def create_force(request: web.Request) -> web.Response:
    return await write(
        request,
        _new_force(request),
        lambda row: answer(ForceOut.model_validate(dict(row)), status=201),
    )


async def list_providers(request: web.Request) -> web.Response:
    query = read_query(request, PageQuery)
    page = await read(
        request,
        UseCase(
            reference.list_providers,
            after=paging.decode_position(query.cursor),
            limit=query.limit,
        ),
    )
    items = [ProviderOut.model_validate(dict(r)) for r in page.items]
    return json_response(Page[ProviderOut](items=items, next_cursor=page.next_cursor))


async def _new_provider(request: web.Request) -> UseCase[Tx, Any]:
    body = await read_body(request, ProviderIn)
    return UseCase(reference.create_provider, name=body.name, duty_phone=body.duty_phone)


def _created_provider(row: Any) -> Answer:
    shown = ProviderOut.model_validate(dict(row))
    return answer(shown, status=201, headers={"Location": f"/v1/providers/{shown.id}"})


async def create_provider(request: web.Request) -> web.Response:
    return await write(request, _new_provider(request), _created_provider)


async def get_provider(request: web.Request) -> web.Response:
    provider_id = path_id(request, "provider_id", "provider")
    row = await read(request, UseCase(reference.get_provider, provider_id=provider_id))
    return json_response(ProviderOut.model_validate(dict(row)))
