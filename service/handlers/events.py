"""GET /v1/events: the event feed, read by cursor, with an optional long poll."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from service import keys, paging
from service.errors import ValidationProblem
from service.handlers.common import json_response, read_query, reading
from service.models import Event, EventPage, EventQuery
from service.usecases.events import FeedPage, Position, read_feed

XID8_MAX = 2**64 - 1
BIGINT_MAX = 2**63 - 1


def _digits(value: Any, most: int) -> int:
    if not (isinstance(value, str) and value.isascii() and value.isdigit()) or len(value) > 20:
        raise ValueError(value)
    number = int(value)
    if number > most:
        raise ValueError(value)
    return number


def _position(values: list[Any]) -> Position:
    """An issued cursor holds a transaction id and an event id, both as digits."""
    if len(values) != 2:
        raise ValueError(values)
    tx, event_id = values
    return str(_digits(tx, XID8_MAX)), _digits(event_id, BIGINT_MAX)


def _after(cursor: str | None) -> Position | None:
    if cursor is None:
        return None
    try:
        # The one cursor decoder, so every cursor is bounded and refused alike.
        return paging._decode(cursor, _position)
    except ValidationProblem:
        raise ValidationProblem(
            "after is not a cursor this service issued",
            errors=[{"field": "after", "message": "not a cursor this service issued"}],
        ) from None


async def list_events(request: web.Request) -> web.Response:
    """Events after the cursor; with `wait`, when there are none yet, the answer waits until
    one in the caller's scope commits (or the wait runs out, or the service stops).

    A waiting request holds no database connection: it waits on the process's one LISTEN
    connection (service/listener.py) and takes a pooled connection only to read.
    """
    query = read_query(request, EventQuery)
    after = _after(query.after)
    listener = request.app[keys.EVENT_LISTENER]
    loop = asyncio.get_running_loop()
    deadline = loop.time() + query.wait
    while True:
        # Taken before the read: a commit between the read and the wait moves it on.
        seen = listener.generation
        async with reading(request) as tx:
            page: FeedPage = await read_feed(tx, after, query.limit, query.types)
        remaining = deadline - loop.time()
        if page.items or remaining <= 0 or listener.stopping or _client_gone(request):
            break
        if not await listener.wait(seen, remaining):
            break
    return json_response(
        EventPage(
            items=[Event.model_validate(item) for item in page.items],
            next_cursor=paging.encode(*page.position),
        )
    )


def _client_gone(request: web.Request) -> bool:
    transport = request.transport
    return transport is None or transport.is_closing()
