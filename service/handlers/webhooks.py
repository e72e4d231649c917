"""Webhook subscriptions: every role manages its own scope's; the secret is shown once."""

from __future__ import annotations

from functools import partial

from aiohttp import web

from service import keys, paging
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
from service.models import Delivery, Page, PageQuery, Webhook, WebhookCreated, WebhookIn
from service.usecases import webhooks
from service.usecases.results import WebhookShown
from service.usecases.tx import Tx
from service.usecases.uow import Answer, UseCase
from service.usecases.webhooks import NewWebhook

# The purpose sealed into a delivery list's cursors (service/paging.py).
DELIVERIES = "webhook-deliveries"


def _webhook(webhook: WebhookShown) -> Webhook:
    return Webhook.model_validate(webhook, from_attributes=True)


async def _new_webhook(request: web.Request) -> UseCase[Tx, webhooks.CreatedWebhook]:
    body = await read_body(request, WebhookIn)
    command = NewWebhook(url=body.url, event_types=[str(t) for t in body.event_types])
    return UseCase(webhooks.create_webhook, command=command)


def _created(created: webhooks.CreatedWebhook) -> Answer:
    webhook = _webhook(created.webhook)
    shown = WebhookCreated(**webhook.model_dump(), secret=created.secret)
    return answer(
        shown,
        status=201,
        headers={"Location": f"/v1/webhooks/{shown.id}"},
        # A replay (same Idempotency-Key) confirms the subscription exists but cannot show
        # its secret again: the stored answer is this one.
        stored=shown.model_copy(update={"secret": None}),
    )


async def create_webhook(request: web.Request) -> web.Response:
    return await write(request, _new_webhook(request), _created)


async def list_webhooks(request: web.Request) -> web.Response:
    query = read_query(request, PageQuery)
    page = await read(
        request,
        UseCase(
            webhooks.list_webhooks,
            after=paging.decode_position(query.cursor),
            limit=query.limit,
        ),
    )
    items = [_webhook(w) for w in page.items]
    return json_response(Page[Webhook](items=items, next_cursor=page.next_cursor))


async def get_webhook(request: web.Request) -> web.Response:
    webhook_id = path_id(request, "webhook_id", "webhook")
    webhook = await read(request, UseCase(webhooks.get_webhook, webhook_id=webhook_id))
    return json_response(_webhook(webhook))


async def delete_webhook(request: web.Request) -> web.Response:
    webhook_id = path_id(request, "webhook_id", "webhook")
    return await write(request, UseCase(webhooks.delete_webhook, webhook_id=webhook_id), no_content)


async def list_webhook_deliveries(request: web.Request) -> web.Response:
    webhook_id = path_id(request, "webhook_id", "webhook")
    query = read_query(request, PageQuery)
    # Sealed: delivery rows are numbered by one sequence across every subscription.
    sealer = await request.app[keys.CURSORS].get()
    before = None
    if query.cursor is not None:
        (before,) = sealer.opened(DELIVERIES, query.cursor, 1, "cursor")
    page = await read(
        request,
        UseCase(
            webhooks.list_deliveries,
            webhook_id=webhook_id,
            before=before,
            limit=query.limit,
            cursor_of=partial(sealer.seal, DELIVERIES),
        ),
    )
    items = [Delivery.model_validate(d, from_attributes=True) for d in page.items]
    return json_response(Page[Delivery](items=items, next_cursor=page.next_cursor))
