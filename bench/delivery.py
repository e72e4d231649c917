"""Event delivery latency (issue 9): how long after a hold commits its `booking.held` event
reaches a client long-polling the feed and a webhook receiver, both on loopback.

Holds go out on a fixed schedule (a steady rate, a bounded count). A feed reader loops on
`GET /v1/events?wait=25` from the feed's end, and an aiohttp server on 127.0.0.1 receives the
subscription's deliveries; each stamps an event's arrival with the wall clock the moment the
bytes are in (before parsing). Two latencies per event, both on this machine's one clock:

- from the event's `occurred_at`: the service's clock read when the hold's request opened its
  unit of work, before its transaction began, so this includes the hold's own work (pool wait,
  statements, commit) and is an upper bound on commit-to-arrival;
- from the hold's 201 reaching the load generator: after the commit, the answer's read and its
  travel, so a lower bound (it can be negative: the feed may see the event before the 201).

The first is the reported figure and the one the goal is checked against. An event that never
arrives within the grace after the last hold counts as infinitely slow."""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import random
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import aiohttp
from aiohttp import web
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from bench.load import Request, percentile

EVENT = "booking.held"
FEED_WAIT_S = 25
FEED_LIMIT = 500


@dataclass
class Arrivals:
    """First arrival (epoch seconds) and `occurred_at` (epoch seconds) per booking id."""

    at: dict[str, float] = field(default_factory=dict)
    occurred: dict[str, float] = field(default_factory=dict)
    duplicates: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    # Set on every new arrival (may be shared by several readers' Arrivals).
    news: asyncio.Event = field(default_factory=asyncio.Event)

    def note(self, event: dict[str, Any], arrived: float) -> None:
        if event.get("type") != EVENT or event.get("booking_id") is None:
            return
        booking = str(event["booking_id"])
        if booking in self.at:
            self.duplicates += 1  # at least once: a receiver dedupes, so only the first counts
            return
        self.at[booking] = arrived
        self.occurred[booking] = datetime.fromisoformat(event["occurred_at"]).timestamp()
        self.news.set()

    def error(self, what: str) -> None:
        self.errors[what] = self.errors.get(what, 0) + 1


@dataclass
class Receiver:
    url: str
    arrivals: Arrivals
    secret: str | None = None  # set once the subscription exists


@contextlib.asynccontextmanager
async def webhook_receiver(news: asyncio.Event) -> AsyncIterator[Receiver]:
    """An aiohttp server on a free loopback port that stamps and verifies each delivery."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    receiver = Receiver(f"http://127.0.0.1:{port}/hook", Arrivals(news=news))

    async def hook(request: web.Request) -> web.Response:
        body = await request.read()
        arrived = time.time()
        if receiver.secret is not None:
            try:
                Webhook(receiver.secret).verify(body, dict(request.headers))
            except WebhookVerificationError:
                receiver.arrivals.error("bad signature")
                return web.Response(status=400)
        receiver.arrivals.note(json.loads(body), arrived)
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        await web.SockSite(runner, sock).start()
        yield receiver
    finally:
        await runner.cleanup()
        sock.close()


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def feed_end(session: aiohttp.ClientSession, base: str, key: str) -> str | None:
    """The cursor after the last `booking.held` event now in the feed (read without waiting)."""
    cursor: str | None = None
    while True:
        params = {"types": EVENT, "limit": str(FEED_LIMIT), "wait": "0"}
        if cursor is not None:
            params["after"] = cursor
        async with session.get(base + "/v1/events", params=params, headers=_auth(key)) as r:
            r.raise_for_status()
            page = await r.json()
        cursor = page["next_cursor"]
        if not page["items"]:
            return cursor


async def follow_feed(
    session: aiohttp.ClientSession, base: str, key: str, cursor: str | None, arrivals: Arrivals
) -> None:
    """Long-poll the feed from `cursor` on, each answer's next_cursor the next request's start,
    until cancelled."""
    while True:
        params = {"types": EVENT, "limit": str(FEED_LIMIT), "wait": str(FEED_WAIT_S)}
        if cursor is not None:
            params["after"] = cursor
        try:
            async with session.get(base + "/v1/events", params=params, headers=_auth(key)) as r:
                body = await r.read()
                arrived = time.time()
                status = r.status
        except aiohttp.ClientError as exc:
            arrivals.error(type(exc).__name__)
            await asyncio.sleep(0.1)
            continue
        if status != 200:
            arrivals.error(str(status))
            await asyncio.sleep(0.1)
            continue
        page = json.loads(body)
        for item in page["items"]:
            arrivals.note(item, arrived)
        cursor = page["next_cursor"]


def _summary(
    arrivals: Arrivals, answered: dict[str, float], include: dict[str, Any]
) -> dict[str, Any]:
    """p50/p99 from occurred_at and from the 201, over every booking the service held."""
    from_occurred: list[float] = []
    from_201: list[float] = []
    for booking, answered_at in answered.items():
        arrived = arrivals.at.get(booking)
        if arrived is None:
            from_occurred.append(math.inf)
            from_201.append(math.inf)
        else:
            from_occurred.append(arrived - arrivals.occurred[booking])
            from_201.append(arrived - answered_at)
    from_occurred.sort()
    from_201.sort()

    def ms(values: list[float], q: float) -> float | None:
        value = percentile(values, q)
        return None if value == math.inf else round(value * 1000, 2)

    received = sum(1 for b in answered if b in arrivals.at)
    return {
        **include,
        "events": len(answered),
        "received": received,
        "missing": len(answered) - received,
        "duplicates": arrivals.duplicates,
        "errors": arrivals.errors,
        "p50_ms": ms(from_occurred, 50),
        "p99_ms": ms(from_occurred, 99),
        "max_ms": ms(from_occurred, 100),
        "after_201_p50_ms": ms(from_201, 50),
        "after_201_p99_ms": ms(from_201, 99),
    }


async def measure(
    base: str,
    admin_key: str,
    holds: list[Request],
    *,
    rate: float,
    count: int,
    grace: float = 10.0,
) -> dict[str, Any]:
    """`count` holds at `rate` a second; each held booking's event timed to the feed reader and
    to the webhook receiver. The subscription is deleted at the end (its id is returned, so the
    caller can take its delivery log out of the database)."""
    rng = random.Random(11)
    chosen = rng.sample(holds, min(count, len(holds)))
    answered: dict[str, float] = {}
    statuses: dict[str, int] = {}
    no_timeout = aiohttp.ClientTimeout(total=None)
    news = asyncio.Event()
    async with (
        webhook_receiver(news) as receiver,
        aiohttp.ClientSession(timeout=no_timeout) as session,
    ):
        async with session.post(
            base + "/v1/webhooks",
            json={"url": receiver.url, "event_types": [EVENT]},
            headers=_auth(admin_key),
        ) as r:
            if r.status != 201:
                raise RuntimeError(f"creating the webhook answered {r.status}: {await r.text()}")
            created = await r.json()
        receiver.secret = created["secret"]
        webhook_id = created["id"]
        feed = Arrivals(news=news)
        reader: asyncio.Task[None] | None = None
        try:
            cursor = await feed_end(session, base, admin_key)
            reader = asyncio.create_task(follow_feed(session, base, admin_key, cursor, feed))
            await asyncio.sleep(0.2)  # the reader's first long poll is waiting

            async def hold(request: Request) -> None:
                status = "error"
                try:
                    async with session.post(
                        base + request.path,
                        data=request.body,
                        headers=_auth(request.key) | {"Content-Type": "application/json"},
                    ) as response:
                        body = await response.read()
                        at = time.time()
                        status = str(response.status)
                        if response.status == 201:
                            answered[str(json.loads(body)["id"])] = at
                except aiohttp.ClientError:
                    pass
                statuses[status] = statuses.get(status, 0) + 1

            started = time.perf_counter()
            tasks = []
            for i, request in enumerate(chosen):
                delay = started + i / rate - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                tasks.append(asyncio.create_task(hold(request)))
            _, unanswered = await asyncio.wait(tasks, timeout=grace)
            for task in unanswered:
                task.cancel()
            await asyncio.gather(*unanswered, return_exceptions=True)
            if unanswered:
                statuses["unanswered"] = len(unanswered)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(grace):
                    while not all(b in feed.at and b in receiver.arrivals.at for b in answered):
                        news.clear()
                        await news.wait()
            elapsed = time.perf_counter() - started
        finally:
            if reader is not None:
                reader.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await reader
            async with session.delete(
                f"{base}/v1/webhooks/{webhook_id}", headers=_auth(admin_key)
            ) as r:
                await r.read()
    basis = {
        "basis": "arrival (wall clock) - event occurred_at: an upper bound on commit-to-arrival"
    }
    return {
        "rate": rate,
        "holds": len(chosen),
        "seconds": round(elapsed, 2),
        "statuses": statuses,
        "grace_s": grace,
        "webhook_id": webhook_id,
        "feed": _summary(feed, answered, {"how": f"GET /v1/events wait={FEED_WAIT_S}"} | basis),
        "webhook": _summary(
            receiver.arrivals, answered, {"how": "POST to 127.0.0.1 receiver"} | basis
        ),
    }
