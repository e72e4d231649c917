"""Webhook subscriptions: every role manages its own scope's; the secret is shown once."""

from __future__ import annotations

from aiohttp import web

from service import keys, paging
from service.handlers.common import json_response, path_id, read_body, read_query, reading, writing
from service.models import Delivery, Page, PageQuery, Webhook, WebhookCreated, WebhookIn
from service.usecases import webhooks
from service.usecases.webhooks import NewWebhook, TargetRules

# The purpose sealed into a delivery list's cursors (service/paging.py).
DELIVERIES = "webhook-deliveries"


def _target_rules(request: web.Request) -> TargetRules:
    settings = request.app[keys.SETTINGS]
    return TargetRules(
        require_https=settings.environment == "production",
        allow_private=settings.webhook_allow_private,
    )


async def create_webhook(request: web.Request) -> web.Response:
    body = await read_body(request, WebhookIn)
    command = NewWebhook(url=body.url, event_types=[str(t) for t in body.event_types])
    async with writing(request) as tx:
        created = await webhooks.create_webhook(tx, command, _target_rules(request))
        shown = WebhookCreated.model_validate({**created.row, "secret": created.secret})
    # A replay (same Idempotency-Key) confirms the subscription exists but cannot show its
    # secret again: the stored answer is this one.
    request[keys.REPLAY_BODY] = shown.model_copy(update={"secret": None}).model_dump_json().encode()
    return json_response(
        shown, status=201, headers={"Location": f"/v1/webhooks/{created.row['id']}"}
    )


async def list_webhooks(request: web.Request) -> web.Response:
    query = read_query(request, PageQuery)
    async with reading(request) as tx:
        rows = await webhooks.list_webhooks(
            tx, paging.decode_position(query.cursor), query.limit + 1
        )
    items, cursor = paging.split_page(rows, query.limit, paging.by_created)
    return json_response(
        Page[Webhook](items=[Webhook.model_validate(dict(r)) for r in items], next_cursor=cursor)
    )


async def get_webhook(request: web.Request) -> web.Response:
    webhook_id = path_id(request, "webhook_id", "webhook")
    async with reading(request) as tx:
        row = await webhooks.get_webhook(tx, webhook_id)
    return json_response(Webhook.model_validate(dict(row)))


async def delete_webhook(request: web.Request) -> web.Response:
    webhook_id = path_id(request, "webhook_id", "webhook")
    async with writing(request) as tx:
        await webhooks.delete_webhook(tx, webhook_id)
    return web.Response(status=204)


async def list_webhook_deliveries(request: web.Request) -> web.Response:
    webhook_id = path_id(request, "webhook_id", "webhook")
    query = read_query(request, PageQuery)
    # Sealed: delivery rows are numbered by one sequence across every subscription.
    sealer = await request.app[keys.CURSORS].get()
    before = None
    if query.cursor is not None:
        (before,) = sealer.opened(DELIVERIES, query.cursor, 1, "cursor")
    async with reading(request) as tx:
        rows = await webhooks.list_deliveries(tx, webhook_id, before, query.limit + 1)
    items, cursor = paging.split_page(
        rows, query.limit, lambda row: sealer.seal(DELIVERIES, row["row_id"])
    )
    return json_response(
        Page[Delivery](items=[Delivery.model_validate(dict(r)) for r in items], next_cursor=cursor)
    )
