"""GET /v1/events: the event feed, read by cursor, with an optional long poll."""

from __future__ import annotations

import asyncio
from functools import partial

from aiohttp import web

from service import keys
from service.domain.webhooks import Scope
from service.handlers.common import json_response, principal, read, read_query
from service.listener import Interest
from service.models import Event, EventPage, EventQuery
from service.paging import Sealer
from service.ratelimit import long_poll
from service.usecases.events import FeedPage, Position, check_key, read_feed
from service.usecases.uow import UseCase

# Sealed (service/paging.py): a feed position holds the server's transaction horizon and an id
# from one global sequence, which would tell a reader about other scopes' events.
FEED = "feed"


def feed_cursor(sealer: Sealer, position: Position) -> str:
    tx, event_id = position
    return sealer.seal(FEED, int(tx), event_id)


def feed_position(sealer: Sealer, cursor: str) -> Position:
    tx, event_id = sealer.opened(FEED, cursor, 2, "after")
    return str(tx), event_id


async def list_events(request: web.Request) -> web.Response:
    """Events after the cursor; with `wait`, when there are none yet, the answer waits until
    one in the caller's scope commits (or the wait runs out, or the service stops).

    A waiting request holds no database connection: it waits on the process's one LISTEN
    connection (service/listener.py), which wakes it only for a change in its scope, and takes
    a pooled connection only to read. A key has at most LONG_POLLS_PER_KEY waiting.
    """
    query = read_query(request, EventQuery)
    sealer = await request.app[keys.CURSORS].get()
    after = None if query.after is None else feed_position(sealer, query.after)
    if query.wait > 0:
        with long_poll(request, query.wait) as ends:
            page = await _poll(request, query, after, ends)
    else:
        page = await _read(
            request, query, after, "request", request.app[keys.EVENT_LISTENER].generation
        )
    return json_response(
        EventPage(
            items=[Event.model_validate(item, from_attributes=True) for item in page.items],
            next_cursor=feed_cursor(sealer, page.position),
        )
    )


async def _read(
    request: web.Request, query: EventQuery, after: Position | None, cause: str, generation: int
) -> FeedPage:
    """One read of the feed, shared with every request asking the same read in the same
    generation (service/listener.py, SharedReads): the result depends only on the scope, the
    position, the types and the limit."""
    who = principal(request)
    shared = request.app[keys.EVENT_LISTENER].shared
    if cause != "request":
        # After a wait the key is checked again: it may have been revoked meanwhile.
        await shared.run(("key", generation, who.key_id), partial(_check_key, request))
    types = None if query.types is None else tuple(query.types)
    what = (generation, who.role, who.force_code, who.provider_id, after, query.limit, types)
    page, made = await shared.run(("feed", *what), partial(_read_once, request, query, after))
    if made:
        request.app[keys.METRICS].feed_reads.labels(cause).inc()
    return page


async def _check_key(request: web.Request) -> None:
    await read(request, UseCase(check_key))


async def _read_once(request: web.Request, query: EventQuery, after: Position | None) -> FeedPage:
    return await read(
        request, UseCase(read_feed, after=after, limit=query.limit, types=query.types)
    )


async def _poll(
    request: web.Request, query: EventQuery, after: Position | None, ends: float
) -> FeedPage:
    listener = request.app[keys.EVENT_LISTENER]
    who = principal(request)
    interest = Interest(
        who.key_id,
        Scope.of(who),
        None if query.types is None else frozenset(str(t) for t in query.types),
    )
    loop = asyncio.get_running_loop()
    cause = "request"
    while True:
        # Taken before the read: a change between the read and the wait is kept for us.
        seen = listener.generation
        page = await _read(request, query, after, cause, seen)
        remaining = ends - loop.time()
        if page.items or remaining <= 0 or listener.stopping or _client_gone(request):
            return page
        fallback = not listener.connected
        if not await listener.wait(interest, seen, remaining):
            return page
        cause = "fallback" if fallback else "woken"


def _client_gone(request: web.Request) -> bool:
    transport = request.transport
    return transport is None or transport.is_closing()
