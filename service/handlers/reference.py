"""Forces and providers: read by every role, written by admins."""

from __future__ import annotations

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
from service.usecases.results import ForceShown, ProviderShown
from service.usecases.tx import Tx
from service.usecases.uow import Answer, UseCase


def _force(force: ForceShown) -> ForceOut:
    return ForceOut.model_validate(force, from_attributes=True)


def _provider(provider: ProviderShown) -> ProviderOut:
    return ProviderOut.model_validate(provider, from_attributes=True)


async def list_forces(request: web.Request) -> web.Response:
    query = read_query(request, PageQuery)
    after = paging.decode_text(query.cursor)
    page = await read(request, UseCase(reference.list_forces, after=after, limit=query.limit))
    items = [_force(f) for f in page.items]
    return json_response(Page[ForceOut](items=items, next_cursor=page.next_cursor))


async def _new_force(request: web.Request) -> UseCase[Tx, ForceShown]:
    body = await read_body(request, ForceIn)
    return UseCase(reference.create_force, code=body.code, name=body.name)


async def create_force(request: web.Request) -> web.Response:
    return await write(request, _new_force(request), lambda f: answer(_force(f), status=201))


async def list_providers(request: web.Request) -> web.Response:
    query = read_query(request, PageQuery)
    after = paging.decode_position(query.cursor)
    page = await read(request, UseCase(reference.list_providers, after=after, limit=query.limit))
    items = [_provider(p) for p in page.items]
    return json_response(Page[ProviderOut](items=items, next_cursor=page.next_cursor))


async def _new_provider(request: web.Request) -> UseCase[Tx, ProviderShown]:
    body = await read_body(request, ProviderIn)
    return UseCase(reference.create_provider, name=body.name, duty_phone=body.duty_phone)


def _created_provider(provider: ProviderShown) -> Answer:
    location = f"/v1/providers/{provider.id}"
    return answer(_provider(provider), status=201, headers={"Location": location})


async def create_provider(request: web.Request) -> web.Response:
    return await write(request, _new_provider(request), _created_provider)


async def get_provider(request: web.Request) -> web.Response:
    provider_id = path_id(request, "provider_id", "provider")
    provider = await read(request, UseCase(reference.get_provider, provider_id=provider_id))
    return json_response(_provider(provider))
