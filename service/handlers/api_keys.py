"""API keys, managed by admins: a new key's secret is shown once, in the creating response."""

from __future__ import annotations

import json

import asyncpg
from aiohttp import web

from service import keys, paging
from service.auth import issue_key
from service.domain.access import require_role
from service.errors import NotFound, ValidationProblem
from service.handlers.common import (
    connection,
    json_response,
    now,
    path_id,
    principal,
    read_body,
    read_query,
    transaction,
)
from service.models import ApiKeyCreated, ApiKeyIn, ApiKeyOut, Page, PageQuery
from service.queries import api_keys, reference


def key_out(row: asyncpg.Record) -> ApiKeyOut:
    return ApiKeyOut(
        id=row["id"],
        name=row["name"],
        role=row["role"],
        force=row["force_code"],
        provider_id=row["provider_id"],
        prefix=row["prefix"],
        created_at=row["created_at"],
        last_used_at=row["last_used_at"],
        revoked_at=row["revoked_at"],
    )


async def create_api_key(request: web.Request) -> web.Response:
    require_role(principal(request), "admin")
    body = await read_body(request, ApiKeyIn)
    async with transaction(request) as conn:
        if body.force is not None and not await reference.force_exists(conn, body.force):
            raise ValidationProblem(
                f"no force has the code {body.force!r}",
                errors=[{"field": "force", "message": "no such force"}],
            )
        provider_id = body.provider_id
        if provider_id is not None and await reference.get_provider(conn, provider_id) is None:
            raise ValidationProblem(
                "no provider has that id",
                errors=[{"field": "provider_id", "message": "no such provider"}],
            )
        row, secret = await issue_key(
            conn,
            name=body.name,
            role=body.role,
            force_code=body.force,
            provider_id=body.provider_id,
        )
    created = key_out(row)
    # A replay (same Idempotency-Key) confirms the key exists but cannot show its secret again.
    replay = ApiKeyCreated(**created.model_dump(), key=None)
    request[keys.REPLAY_BODY] = json.dumps(replay.model_dump(mode="json")).encode()
    return json_response(
        ApiKeyCreated(**created.model_dump(), key=secret),
        status=201,
        headers={"Location": f"/v1/api-keys/{row['id']}"},
    )


async def list_api_keys(request: web.Request) -> web.Response:
    require_role(principal(request), "admin")
    query = read_query(request, PageQuery)
    async with connection(request) as conn:
        rows = await api_keys.list_page(conn, paging.decode_position(query.cursor), query.limit + 1)
    items, cursor = paging.split_page(rows, query.limit, paging.by_created)
    return json_response(Page[ApiKeyOut](items=[key_out(r) for r in items], next_cursor=cursor))


async def revoke_api_key(request: web.Request) -> web.Response:
    require_role(principal(request), "admin")
    key_id = path_id(request, "key_id", "API key")
    async with transaction(request) as conn:
        row = await api_keys.revoke(conn, key_id, now(request))
    if row is None:
        raise NotFound("API key not found")
    return web.Response(status=204)
