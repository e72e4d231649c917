"""The webhook dispatcher against real receivers on 127.0.0.1: every event of a subscription's
scope arrives, signed, in feed order, at least once (exactly once after de-duplication by
webhook-id), through failures and retries, a 410, two dispatchers at once, and a service
process killed mid-delivery.

Each test has a database of its own (the session's may hold other tests' subscriptions), drives
retries with the manual clock rather than waiting, and is bounded by deadlines."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import asyncpg
import pytest
from aiohttp import web
from standardwebhooks.webhooks import Webhook

from service.db import Pool
from service.dispatch import (
    DispatchConfig,
    Round,
    dispatch_once,
    http_sender,
    new_session,
)
from service.domain.webhooks import event_body
from service.migrate import migrate
from service.queries import beds, events, reference, sites
from service.settings import Settings
from service.vocab import EventType, Role
from tests.conftest import AppFactory
from tests.support.api import Api
from tests.support.clock import ManualClock
from tests.support.process import UNLIMITED, pos_env, served
from tests.support.units import units_of
from tests.support.until import until
from tests.support.world import World, booking_body, cli_key, site_body, unique

ALL_TYPES = [str(t) for t in EventType]
HELD_CONFIRMED = ["booking.held", "booking.confirmed"]
FAST = {
    "webhook_allow_private": True,
    "webhook_retry_base_seconds": 5.0,
    "webhook_retry_max_seconds": 60.0,
}


@pytest.fixture
def database_dsn(migrated_database: str) -> str:
    """This module's tests each get a migrated database of their own."""
    return migrated_database


# --- a receiver --------------------------------------------------------------------------------


@dataclass
class Delivery:
    headers: dict[str, str]
    body: bytes
    status: int

    @property
    def webhook_id(self) -> str:
        return self.headers["webhook-id"]


@dataclass
class Receiver:
    """An HTTP server on 127.0.0.1 answering each POST as `answer(n)` says (n counts from 0);
    `answer` may also be a coroutine function (to stall). Keeps every answered request."""

    answer: Callable[[int], Any]
    url: str = ""
    # The webhook-id of every request as it arrived, answered or not.
    arrivals: list[str] = field(default_factory=list)
    answered: list[Delivery] = field(default_factory=list)

    @property
    def arrived(self) -> int:
        return len(self.arrivals)

    async def handle(self, request: web.Request) -> web.Response:
        n = self.arrived
        headers = {k.lower(): v for k, v in request.headers.items()}
        self.arrivals.append(headers.get("webhook-id", ""))
        body = await request.read()
        status = self.answer(n)
        if asyncio.iscoroutine(status):
            status = await status
        self.answered.append(Delivery(headers, body, status))
        return web.Response(status=status)


@asynccontextmanager
async def receiving(answer: Callable[[int], Any]) -> AsyncIterator[Receiver]:
    receiver = Receiver(answer)
    app = web.Application()
    app.router.add_post("/hook", receiver.handle)
    runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    receiver.url = f"http://{host}:{port}/hook"
    try:
        yield receiver
    finally:
        await runner.cleanup()


def verified(delivery: Delivery, secret: str) -> dict[str, Any]:
    """The body, once its signature checks out (standardwebhooks raises otherwise)."""
    assert delivery.headers["content-type"] == "application/json"
    assert delivery.webhook_id == json.loads(delivery.body)["id"]
    body: dict[str, Any] = Webhook(secret).verify(delivery.body, delivery.headers)
    return body


def first_of_each(deliveries: list[Delivery]) -> list[Delivery]:
    seen: set[str] = set()
    kept = []
    for d in deliveries:
        if d.webhook_id not in seen:
            seen.add(d.webhook_id)
            kept.append(d)
    return kept


# --- the dispatcher, driven by hand ---------------------------------------------------------


@dataclass
class Driver:
    """Rounds of the dispatcher on the test's pool, with the test's clock; `drain` moves the
    clock past each retry's backoff until nothing is due."""

    db: Pool
    clock: ManualClock
    config: DispatchConfig
    session: aiohttp.ClientSession
    rounds: int = 0
    advanced: timedelta = timedelta(0)

    async def round(self) -> Round:
        self.rounds += 1
        # The backoff's jitter is drawn at its ceiling, so retries come at known times.
        return await dispatch_once(
            units_of(self.db, self.clock),
            http_sender(self.session, self.config),
            self.config,
            lambda: 1.0,
        )

    async def drain(self, limit: int = 50) -> None:
        for _ in range(limit):
            done = await self.round()
            async with self.db.acquire() as conn:
                due = await conn.fetchval(
                    "SELECT min(next_attempt_at) FROM webhook WHERE status = 'active'"
                )
            if due is not None and due > self.clock.now():
                self.advanced += due - self.clock.now()
                self.clock.set(due)
                continue
            if done.attempts == 0:
                return
        raise AssertionError(f"the dispatcher did not settle within {limit} rounds")


@asynccontextmanager
async def driver(db: Pool, clock: ManualClock, settings: Settings) -> AsyncIterator[Driver]:
    config = DispatchConfig.from_settings(settings)
    session = new_session(config)
    try:
        yield Driver(db, clock, config, session)
    finally:
        await session.close()


async def subscribe(api: Api, key: str, url: str, types: list[str] = ALL_TYPES) -> dict[str, Any]:
    reply = await api.post("/v1/webhooks", {"url": url, "event_types": types}, key=key)
    assert reply.status == 201, reply.body
    created: dict[str, Any] = reply.body
    return created


async def start_of(db: Pool, webhook_id: str) -> tuple[str, int]:
    async with db.acquire() as conn:
        row = await conn.fetchrow(
            "SELECT after_tx::text AS tx, after_id FROM webhook WHERE id = $1::uuid", webhook_id
        )
    assert row is not None
    return row["tx"], row["after_id"]


async def expected_events(
    db: Pool, after: tuple[str, int], *, force_code: str | None, role: Role
) -> list[dict[str, Any]]:
    """What the subscription should receive: its scope's feed from where it started."""
    async with db.acquire() as conn:
        read = await events.page(conn, after=after, limit=10_000, force_code=force_code)
    return [event_body(row, role) for row in read.rows]


async def caught_up(db: Pool, within: float = 10) -> None:
    """Wait until the feed shows every event written: it shows a transaction's events once no
    older transaction that may write events is still running (sql/0021_feed_horizon.sql)."""

    async def shown() -> bool:
        async with db.acquire() as conn:
            hidden = await conn.fetchval("SELECT count(*) FROM event WHERE tx >= event_horizon()")
        return hidden == 0

    await until(shown, within, what="the feed to catch up")


async def deliveries(api: Api, key: str, webhook_id: str) -> list[dict[str, Any]]:
    return await api.all_items(f"/v1/webhooks/{webhook_id}/deliveries", key=key)


# --- the tests ------------------------------------------------------------------------------------


async def _scenario(world: World, clock: ManualClock, step: Callable[[], Any]) -> int:
    """Twenty changes through the API (holds, confirms, cancels, check-ins and -outs, blocks,
    an extension, a site change), calling `step()` after each; returns the number of steps."""
    steps = 0

    async def done() -> None:
        nonlocal steps
        steps += 1
        await step()

    start = clock.now() + timedelta(hours=1)
    site = await world.site()
    await done()
    bed_ids = [(await world.bed(site["id"]))["id"] for _ in range(3)]
    for _ in bed_ids:
        await done()
    a = await world.book(site["id"], start)
    await done()
    await world.act(a["id"], "confirm")
    await done()
    b = await world.book(site["id"], start)
    await done()
    await world.act(b["id"], "cancel", reason="not needed")
    await done()
    await world.act(a["id"], "check-in", key=world.provider)
    await done()
    c = await world.book(site["id"], start)
    await done()
    await world.act(c["id"], "confirm")
    await done()
    await world.act(a["id"], "check-out", key=world.provider, reason="moved on")
    await done()
    block = await world.api.post(
        f"/v1/sites/{site['id']}/blocks",
        {
            "bed_id": bed_ids[2],
            "start": (start + timedelta(days=5)).isoformat(),
            "end": (start + timedelta(days=6)).isoformat(),
            "reason": "repairs",
        },
        key=world.provider,
    )
    assert block.status == 201, block.body
    await done()
    removed = await world.api.delete(
        f"/v1/sites/{site['id']}/blocks/{block.body['id']}", key=world.provider
    )
    assert removed.status == 204
    await done()
    await world.act(c["id"], "extend", end=(start + timedelta(hours=30)).isoformat())
    await done()
    d = await world.book(site["id"], start)
    await done()
    await world.act(d["id"], "cancel", key=world.provider, reason="room needed")
    await done()
    await world.act(c["id"], "check-in", key=world.provider)
    await done()
    await world.act(c["id"], "check-out", key=world.provider, reason="left")
    await done()
    patched = await world.api.patch(
        f"/v1/sites/{site['id']}", {"max_stay_hours": 96}, key=world.provider
    )
    assert patched.status == 200, patched.body
    await done()
    return steps


async def test_every_event_arrives_once_in_order_through_three_failures(
    make_api: AppFactory, db: Pool, clock: ManualClock, settings: Settings
) -> None:
    api = await make_api(settings_overrides={**FAST, "rate_limit_writes_per_minute": 0})
    world = await World.create(api, db)
    async with (
        receiving(lambda n: 500 if n < 3 else 200) as receiver,
        driver(db, clock, settings.model_copy(update=FAST)) as dispatcher,
    ):
        hook = await subscribe(api, world.officer, receiver.url)
        began = await start_of(db, hook["id"])
        steps = await _scenario(world, clock, dispatcher.drain)
        await caught_up(db)
        await dispatcher.drain()
        expected = await expected_events(db, began, force_code=world.force, role=Role.OFFICER)

    assert steps == 20
    received = first_of_each(receiver.answered)
    assert [verified(d, hook["secret"]) for d in received] == expected
    assert len({e["type"] for e in expected}) >= 7
    # Three answers of 500 to the first event, then each event once.
    assert [d.status for d in receiver.answered] == [500] * 3 + [200] * len(expected)
    assert {d.webhook_id for d in receiver.answered[:4]} == {expected[0]["id"]}
    timestamps = {d.headers["webhook-timestamp"] for d in receiver.answered}
    assert all(abs(int(t) - time.time()) < 300 for t in timestamps)

    log = list(reversed(await deliveries(api, world.officer, hook["id"])))
    assert [(e["attempt"], e["status_code"], e["outcome"]) for e in log[:3]] == [
        (1, 500, "retry"),
        (2, 500, "retry"),
        (3, 500, "retry"),
    ]
    # The backoff doubles from the base (jitter drawn at its ceiling): 5 s, 10 s, 20 s.
    gaps = [
        datetime.fromisoformat(e["next_attempt_at"]) - datetime.fromisoformat(e["at"])
        for e in log[:3]
    ]
    assert gaps == [timedelta(seconds=5), timedelta(seconds=10), timedelta(seconds=20)]
    assert dispatcher.advanced == timedelta(seconds=35)
    assert [(e["attempt"], e["status_code"], e["outcome"]) for e in log[3:]] == [
        (4, 200, "delivered")
    ] + [(1, 200, "delivered")] * (len(expected) - 1)
    assert [e["event_id"] for e in log[3:]] == [e["id"] for e in expected]
    assert all(e["next_attempt_at"] is None for e in log[3:])
    print(  # noqa: T201 (the figures the report quotes)
        f"\n{steps} steps, {len(expected)} events, {len(receiver.answered)} requests "
        f"({len(log)} delivery rows), clock advanced {dispatcher.advanced}, "
        f"{dispatcher.rounds} rounds"
    )


async def test_a_410_disables_the_subscription(
    make_api: AppFactory, db: Pool, clock: ManualClock, settings: Settings
) -> None:
    api = await make_api(settings_overrides=FAST)
    world = await World.create(api, db)
    async with (
        receiving(lambda n: 410) as receiver,
        driver(db, clock, settings.model_copy(update=FAST)) as dispatcher,
    ):
        hook = await subscribe(api, world.provider, receiver.url)
        site = await world.site()
        await world.bed(site["id"])
        await caught_up(db)
        await dispatcher.drain()
        assert len(receiver.answered) == 1
        shown = await api.get(f"/v1/webhooks/{hook['id']}", key=world.provider)
        assert shown.body["status"] == "disabled"
        assert "410" in shown.body["disabled_reason"]
        # Later events, and time, send nothing more.
        await world.bed(site["id"])
        clock.advance(hours=2)
        await caught_up(db)
        await dispatcher.drain()
    assert len(receiver.answered) == 1
    log = await deliveries(api, world.provider, hook["id"])
    assert [(e["status_code"], e["outcome"], e["next_attempt_at"]) for e in log] == [
        (410, "disabled", None)
    ]


async def test_an_event_failing_for_the_give_up_time_is_skipped(
    make_api: AppFactory, db: Pool, clock: ManualClock, settings: Settings
) -> None:
    fast = {**FAST, "webhook_retry_max_seconds": 3600.0}
    api = await make_api(settings_overrides=fast)
    world = await World.create(api, db)
    failing = True
    async with (
        receiving(lambda n: 503 if failing else 200) as receiver,
        driver(db, clock, settings.model_copy(update=fast)) as dispatcher,
    ):
        hook = await subscribe(api, world.provider, receiver.url)
        site = await world.site()
        await world.bed(site["id"])
        await caught_up(db)
        await dispatcher.round()
        began = clock.now()
        while clock.now() - began < timedelta(hours=25):
            async with db.acquire() as conn:
                due = await conn.fetchval(
                    "SELECT next_attempt_at FROM webhook WHERE id = $1::uuid", hook["id"]
                )
            clock.set(due)
            await dispatcher.round()
        failing = False
        await world.bed(site["id"])
        await caught_up(db)
        await dispatcher.drain()
    log = list(reversed(await deliveries(api, world.provider, hook["id"])))
    outcomes = [e["outcome"] for e in log]
    assert outcomes.count("gave_up") == 1
    gave_up = outcomes.index("gave_up")
    skipped = log[gave_up]["event_id"]
    # Tried for 25 hours (with backoff capped at an hour), then given up; the next goes.
    assert outcomes[:gave_up] == ["retry"] * gave_up
    assert {e["event_id"] for e in log[: gave_up + 1]} == {skipped}
    tried_for = datetime.fromisoformat(log[gave_up]["at"]) - datetime.fromisoformat(log[0]["at"])
    assert timedelta(hours=25) <= tried_for < timedelta(hours=26)
    assert skipped not in {e["event_id"] for e in log[gave_up + 1 :]}
    assert outcomes[-1] == "delivered"
    assert receiver.answered[-1].status == 200
    print(  # noqa: T201 (the figures the report quotes)
        f"\ngave up after {gave_up + 1} attempts over {tried_for}"
    )


async def test_targets_are_checked_again_when_sending(
    make_api: AppFactory, db: Pool, clock: ManualClock, settings: Settings
) -> None:
    """A subscription made while private targets were allowed is not sent to once they are not:
    neither to an address literal nor to a name that resolves to loopback."""
    api = await make_api(settings_overrides=FAST)
    world = await World.create(api, db)
    async with receiving(lambda n: 200) as receiver:
        by_name = receiver.url.replace("127.0.0.1", "localhost")
        hooks = [await subscribe(api, world.provider, url) for url in (receiver.url, by_name)]
        site = await world.site()
        await world.bed(site["id"])
        await caught_up(db)
        refusing = settings.model_copy(update={**FAST, "webhook_allow_private": False})
        async with driver(db, clock, refusing) as dispatcher:
            await dispatcher.round()
    assert receiver.arrived == 0
    for hook in hooks:
        (attempt,) = await deliveries(api, world.provider, hook["id"])
        assert attempt["outcome"] == "retry" and attempt["status_code"] is None
        assert "may not reach" in attempt["error"] or "refused" in attempt["error"]


async def test_two_dispatchers_at_once_send_each_event_once(
    make_api: AppFactory, db: Pool, clock: ManualClock, settings: Settings
) -> None:
    api = await make_api(settings_overrides=FAST)
    world = await World.create(api, db)
    async with (
        receiving(lambda n: 200) as receiver,
        driver(db, clock, settings.model_copy(update=FAST)) as one,
        driver(db, clock, settings.model_copy(update=FAST)) as two,
    ):
        hooks = [await subscribe(api, world.provider, receiver.url) for _ in range(6)]
        site = await world.site()
        for _ in range(4):
            await world.bed(site["id"])
        await caught_up(db)
        for _ in range(5):
            await asyncio.gather(one.round(), two.round())
    by_hook: dict[str, list[str]] = {}
    for hook in hooks:
        log = await deliveries(api, world.provider, hook["id"])
        by_hook[hook["id"]] = [e["event_id"] for e in reversed(log)]
        assert {e["outcome"] for e in log} == {"delivered"}
    counts = {len(ids) for ids in by_hook.values()}
    assert len(counts) == 1 and counts != {0}
    # Each subscription got each event once: 6 subscriptions x the same events, no repeats.
    assert len(receiver.answered) == 6 * counts.pop()
    assert all(len(ids) == len(set(ids)) for ids in by_hook.values())


# --- a process killed mid-delivery -------------------------------------------------------------


async def _seed(dsn: str) -> tuple[str, str, str]:
    """A force with an officer's key, and a site with a bed: (officer key, site id, force)."""
    conn = await asyncpg.connect(dsn)
    try:
        force = unique("f")
        at = datetime.now(UTC)
        await reference.create_force(conn, force, f"Force {force}", at=at)
        provider = await reference.create_provider(conn, unique("Provider"), at=at)
        assert provider is not None
        body = site_body()
        location = body.pop("location")
        site = await sites.create(conn, provider["id"], **body, **location, status="active", at=at)
        for i in range(8):
            await beds.create(
                conn,
                site["id"],
                label=f"Room {i}",
                room_type="single",
                wheelchair_accessible=False,
                max_dependants=0,
                in_service=True,
                at=at,
            )
        officer = await cli_key(conn, name=unique("officer"), role="officer", force_code=force)
    finally:
        await conn.close()
    return officer.secret, str(site["id"]), force


async def _hold_and_confirm(base: str, key: str, site_id: str, count: int) -> None:
    headers = {"Authorization": f"Bearer {key}"}
    async with aiohttp.ClientSession() as http:
        for _ in range(count):
            body = booking_body(site_id, datetime.now(UTC) + timedelta(hours=1), 24)
            async with http.post(f"{base}/v1/bookings", json=body, headers=headers) as resp:
                assert resp.status == 201, await resp.text()
                booking = await resp.json()
            async with http.post(
                f"{base}/v1/bookings/{booking['id']}/confirm", headers=headers
            ) as resp:
                assert resp.status == 200, await resp.text()


@pytest.mark.slow
async def test_a_process_killed_mid_delivery_leaves_it_to_the_next(
    fresh_database: str,
) -> None:
    """SIGKILL a `pos serve` while a receiver holds one delivery unanswered; start it again:
    every event still arrives, in order (the held one is sent again: duplicates allowed)."""
    started = time.monotonic()
    conn = await asyncpg.connect(fresh_database)
    try:
        await migrate(conn)
    finally:
        await conn.close()
    officer, site_id, force = await _seed(fresh_database)
    env = pos_env(
        DATABASE_URL=fresh_database,
        LOG_LEVEL="warning",
        WEBHOOK_ALLOW_PRIVATE="true",
        WEBHOOK_TIMEOUT_SECONDS="2",
        WEBHOOK_LEASE_SECONDS="3",
        WEBHOOK_RETRY_BASE_SECONDS="0.2",
        WEBHOOK_RETRY_MAX_SECONDS="1",
        DISPATCH_INTERVAL_SECONDS="0.1",
        **UNLIMITED,
    )
    held = asyncio.Event()
    release = asyncio.Event()
    stall_at = 5

    async def answer(n: int) -> int:
        if n == stall_at:
            held.set()
            # Unanswered until the test lets go (after the kill): bounded all the same.
            async with asyncio.timeout(20):
                await release.wait()
        return 200

    async with receiving(answer) as receiver, served(env, drain=True) as first:
        reply = await _post_json(
            f"{first.base}/v1/webhooks",
            officer,
            {"url": receiver.url, "event_types": HELD_CONFIRMED},
        )
        hook_id, secret = reply["id"], reply["secret"]
        pool = await asyncpg.create_pool(fresh_database, min_size=1, max_size=2)
        try:
            began = await start_of(pool, hook_id)
            await _hold_and_confirm(first.base, officer, site_id, 5)
            async with asyncio.timeout(15):
                await held.wait()
            first.proc.send_signal(signal.SIGKILL)
            code, _ = await asyncio.wait_for(first.exited(), 10)
            assert code == -signal.SIGKILL
            answered_before_kill = len(receiver.answered)
            release.set()
            async with served(env, drain=True) as second:
                await _hold_and_confirm(second.base, officer, site_id, 3)
                await caught_up(pool)
                async with pool.acquire() as c:
                    read = await events.page(
                        c, after=began, limit=1000, force_code=force, types=HELD_CONFIRMED
                    )
                wanted = [str(r["public_id"]) for r in read.rows]
                await until(
                    lambda: (
                        {d.webhook_id for d in receiver.answered if d.status == 200} >= set(wanted)
                    ),
                    within=20,
                    what="every event to arrive",
                )
        finally:
            await pool.close()

    assert len(wanted) == 16  # 8 holds and 8 confirmations
    answered = receiver.answered
    for d in answered:
        verified(d, secret)
    # The delivery the killed process was waiting on is sent again by the next one.
    held_id = receiver.arrivals[stall_at]
    assert receiver.arrivals.count(held_id) >= 2
    assert held_id in {d.webhook_id for d in answered[answered_before_kill:]}
    assert [d.webhook_id for d in first_of_each(answered)] == wanted
    # In order, duplicates aside: no event arrives before an earlier one's first arrival.
    position = {event_id: i for i, event_id in enumerate(wanted)}
    latest = -1
    for d in answered:
        assert position[d.webhook_id] <= latest + 1
        latest = max(latest, position[d.webhook_id])
    elapsed = time.monotonic() - started
    assert elapsed < 40
    print(  # noqa: T201 (the figures the report quotes)
        f"\n{len(wanted)} events, {len(answered)} requests answered "
        f"({len(answered) - len(wanted)} repeated), held event {held_id}, {elapsed:.1f} s"
    )


async def _post_json(url: str, key: str, body: dict[str, Any]) -> dict[str, Any]:
    async with (
        aiohttp.ClientSession() as http,
        http.post(url, json=body, headers={"Authorization": f"Bearer {key}"}) as resp,
    ):
        assert resp.status == 201, await resp.text()
        result: dict[str, Any] = await resp.json()
        return result


async def test_a_subscription_whose_types_match_nothing_moves_on(
    make_api: AppFactory, db: Pool, clock: ManualClock, settings: Settings
) -> None:
    """A round with nothing to send moves the subscription to where its read was complete, so
    the next round does not walk the same stretch of other events again."""
    api = await make_api(settings_overrides=FAST)
    world = await World.create(api, db)
    async with (
        receiving(lambda n: 200) as receiver,
        driver(db, clock, settings.model_copy(update=FAST)) as dispatcher,
    ):
        hook = await subscribe(api, world.provider, receiver.url, types=["booking.no_show"])
        began = await start_of(db, hook["id"])
        site = await world.site()
        for _ in range(3):
            await world.bed(site["id"])  # site.availability_changed: not asked for
        await caught_up(db)
        await dispatcher.drain()
        moved = await start_of(db, hook["id"])
    assert receiver.answered == []
    assert int(moved[0]) > int(began[0])
    async with db.acquire() as conn:
        skipped = await conn.fetchval(
            "SELECT count(*) FROM event WHERE site_id = $1::uuid AND tx <= $2::text::xid8",
            site["id"],
            moved[0],
        )
    assert skipped == 3
