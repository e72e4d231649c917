"""GET /v1/events (issue 9 item 1): the event feed, scoped per role, paged by an opaque cursor
that is always given, and long-polled with `wait` without holding a database connection.

The database is shared by the session's tests, so each test reads from the feed's end as it
was when the test began (the HEAD position, made into a cursor as the service makes them).
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import time
import uuid
from datetime import timedelta
from typing import Any

import aiohttp
import pytest

from service import keys, paging
from service import listener as listener_module
from service.db import Pool, pool_state
from service.handlers.events import feed_cursor, feed_position
from service.listener import EventListener
from service.paging import Sealer
from service.queries import events as event_queries
from tests.conftest import AppFactory
from tests.support.api import Api, Reply
from tests.support.clock import ManualClock
from tests.support.until import until
from tests.support.world import World, new_key, unique

BOOKING_DATA = {"booking_id", "status", "site_id", "force", "bed_id", "start", "end"}


async def head(api: Api, db: Pool) -> str:
    """A cursor at the feed's end now: what follows is what this test does."""
    async with db.acquire() as conn:
        row = await conn.fetchrow(event_queries.HEAD)
    assert row is not None
    return feed_cursor(await sealer(api), (row["tx"], row["id"]))


async def feed_order(db: Pool, public_ids: list[str]) -> list[tuple[int, int]]:
    """The feed positions, (tx, id), of events shown by their public ids, in the order given."""
    async with db.acquire() as conn:
        rows = await conn.fetch(
            "SELECT public_id::text AS public_id, tx::text AS tx, id FROM event"
            " WHERE public_id = ANY ($1::uuid[])",
            public_ids,
        )
    found = {row["public_id"]: (int(row["tx"]), row["id"]) for row in rows}
    return [found[i] for i in public_ids]


async def sealer(api: Api) -> Sealer:
    return await api.client.server.app[keys.CURSORS].get()


async def settled(db: Pool) -> None:
    """Until no committed event is held back: a writing transaction anywhere on the server
    (other databases' too: transaction ids are the server's) holds the feed back a moment."""

    async def clear() -> bool:
        async with db.acquire() as conn:
            _, held_back = await event_queries.watch(conn)
        return not held_back

    await until(clear)


async def feed(api: Api, key: str, **params: Any) -> Reply:
    reply = await api.get("/v1/events", key=key, params=params)
    assert reply.status == 200, reply.body
    assert isinstance(reply.body["next_cursor"], str)
    return reply


async def position(api: Api, cursor: str) -> tuple[int, int]:
    """A cursor's feed position (the test may look inside what clients treat as opaque)."""
    tx, event_id = feed_position(await sealer(api), cursor)
    return int(tx), event_id


async def read_to_end(api: Api, key: str, after: str, **params: Any) -> list[dict[str, Any]]:
    """Every event after `after`, following next_cursor until a page comes back empty."""
    await settled(api.client.server.app[keys.POOL])
    items: list[dict[str, Any]] = []
    cursor = after
    for _ in range(1000):
        reply = await feed(api, key, after=cursor, **params)
        if not reply.body["items"]:
            # Nothing read: the position moves on to where the read was complete, never back.
            assert await position(api, reply.body["next_cursor"]) >= await position(api, cursor)
            return items
        items += reply.body["items"]
        cursor = reply.body["next_cursor"]
    raise AssertionError("the feed did not end")


def listener_of(api: Api) -> EventListener:
    return api.client.server.app[keys.EVENT_LISTENER]


async def second_force(world: World) -> tuple[str, str]:
    code = unique("f")
    reply = await world.api.post("/v1/forces", {"code": code, "name": code}, key=world.admin)
    assert reply.status == 201, reply.body
    return code, await new_key(world.api, world.admin, role="officer", force=code)


async def test_each_role_reads_only_its_scope(world: World, db: Pool, clock: ManualClock) -> None:
    other_force, other_officer = await second_force(world)
    start = await head(world.api, db)
    site = await world.site()
    await world.bed(site["id"])
    other_site = await world.site(key=world.other_provider)
    await world.bed(other_site["id"], key=world.other_provider)
    ours = await world.book(site["id"], clock.now() + timedelta(hours=1))
    theirs = await world.book(other_site["id"], clock.now() + timedelta(hours=1), key=other_officer)
    sites = {site["id"], other_site["id"]}

    def bookings(items: list[dict[str, Any]]) -> set[str]:
        return {i["booking_id"] for i in items if i["booking_id"] is not None}

    def site_events(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [
            i for i in items if i["type"] == "site.availability_changed" and i["site_id"] in sites
        ]

    admin = await read_to_end(world.api, world.admin, start)
    assert bookings(admin) >= {ours["id"], theirs["id"]}
    # bed_added and booking_held at each site, with their causes.
    assert (
        sorted(e["data"]["cause"] for e in site_events(admin))
        == ["bed_added"] * 2 + ["booking_held"] * 2
    )
    ids = [i["id"] for i in admin]
    assert len(set(ids)) == len(ids)

    officer = await read_to_end(world.api, world.officer, start)
    assert bookings(officer) == {ours["id"]}
    assert {i["type"] for i in officer if i["booking_id"]} == {"booking.held"}
    # Every site's availability changes, but only which site: never the cause.
    assert len(site_events(officer)) == 4
    assert all(e["data"] == {"site_id": e["site_id"]} for e in site_events(officer))
    assert all(
        i["data"]["force"] == world.force for i in officer if i["type"].startswith("booking.")
    )
    assert bookings(await read_to_end(world.api, other_officer, start)) == {theirs["id"]}

    provider = await read_to_end(world.api, world.provider, start)
    assert bookings(provider) == {ours["id"]}
    assert {i["site_id"] for i in provider} == {site["id"]}
    assert sorted(e["data"]["cause"] for e in site_events(provider)) == [
        "bed_added",
        "booking_held",
    ]
    other_provider = await read_to_end(world.api, world.other_provider, start)
    assert bookings(other_provider) == {theirs["id"]}
    assert {i["site_id"] for i in other_provider} == {other_site["id"]}

    # A booking event says what happened to which bed, when, for whom: never the person.
    (held,) = [i for i in admin if i["booking_id"] == ours["id"]]
    assert held["type"] == "booking.held"
    assert set(held["data"]) == BOOKING_DATA
    assert held["data"]["status"] == "held" and held["data"]["force"] == world.force
    reply = await feed(world.api, world.admin, after=start)
    for personal in ("REF-", "PC 1234", "Leeds Elland Road"):
        assert personal not in reply.raw.decode()
    assert other_force not in {i["data"].get("force") for i in officer}


async def test_pages_follow_next_cursor_in_order(world: World, db: Pool) -> None:
    start = await head(world.api, db)
    site = await world.site()
    for status in ["paused", "active"] * 3:
        reply = await world.api.patch(
            f"/v1/sites/{site['id']}", {"status": status}, key=world.provider
        )
        assert reply.status == 200, reply.body
    await settled(db)
    whole = await feed(world.api, world.provider, after=start, limit=500)
    assert len(whole.body["items"]) == 6

    pages = []
    cursor = start
    while True:
        reply = await feed(world.api, world.provider, after=cursor, limit=4)
        if not reply.body["items"]:
            break
        pages.append(reply.body["items"])
        cursor = reply.body["next_cursor"]
    assert [len(p) for p in pages] == [4, 2]
    assert [i for p in pages for i in p] == whole.body["items"]
    order = await feed_order(db, [i["id"] for i in whole.body["items"]])
    assert order == sorted(order)
    # The last cursor reads nothing while nothing new comes (its answer's cursor never goes
    # back), and picks up what does.
    again = await feed(world.api, world.provider, after=cursor)
    assert again.body["items"] == []
    assert await position(world.api, again.body["next_cursor"]) >= await position(world.api, cursor)
    await world.api.patch(f"/v1/sites/{site['id']}", {"status": "paused"}, key=world.provider)
    await settled(db)
    (latest,) = (await feed(world.api, world.provider, after=cursor)).body["items"]
    assert (await feed_order(db, [latest["id"]]))[0] > order[-1]

    # Without `after`, from the oldest event; a type filter keeps the order.
    first = await feed(world.api, world.admin, limit=1)
    assert len(first.body["items"]) == 1
    filtered = await feed(world.api, world.provider, after=start, types="booking.held")
    assert filtered.body["items"] == []
    only = await feed(
        world.api, world.provider, after=start, types="booking.held,site.availability_changed"
    )
    assert only.body["items"] == [*whole.body["items"], latest]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"after": "not a cursor"}, "after"),
        ({"after": paging.encode("x", "1")}, "after"),
        ({"after": paging.encode("1")}, "after"),
        ({"after": paging.encode("1", "-1")}, "after"),
        ({"after": paging.encode(2**64, 1)}, "after"),
        ({"after": paging.encode("1", 2**63)}, "after"),
        ({"after": paging.encode("2030-01-01T00:00:00+00:00", "6f1b5c36")}, "after"),
        ({"limit": 0}, "limit"),
        ({"limit": 501}, "limit"),
        ({"wait": 31}, "wait"),
        ({"wait": -1}, "wait"),
        ({"wait": "nan"}, "wait"),
        ({"types": "booking.held,booking.held"}, "types"),
        ({"types": "booking.nothing"}, "types.0"),
        ({"cursor": paging.encode("1", "1")}, "cursor"),
    ],
)
async def test_bad_parameters_are_400_naming_them(
    world: World, params: dict[str, Any], field: str
) -> None:
    reply = await world.api.get("/v1/events", key=world.officer, params=params)
    assert reply.status == 400, reply.body
    assert reply.field_names() == {field}, reply.body


async def test_a_long_poll_answers_as_soon_as_an_event_in_scope_commits(
    world: World, db: Pool, clock: ManualClock
) -> None:
    site = await world.site()
    await world.bed(site["id"])
    start = await head(world.api, db)
    listener = listener_of(world.api)
    await until(lambda: listener.connected)
    began = time.monotonic()
    poll = asyncio.create_task(
        feed(world.api, world.officer, after=start, wait=25, types="booking.held")
    )
    await until(lambda: listener.waiting == 1)
    # A change in scope but of another type does not wake the reader (tests/api/
    # test_long_polls.py counts that), which waits on.
    await world.api.patch(f"/v1/sites/{site['id']}", {"status": "paused"}, key=world.provider)
    await world.api.patch(f"/v1/sites/{site['id']}", {"status": "active"}, key=world.provider)
    await until(lambda: listener.waiting == 1)
    assert not poll.done()

    changed = time.monotonic()
    booking = await world.book(site["id"], clock.now() + timedelta(hours=1))
    reply = await asyncio.wait_for(poll, 10)
    answered = time.monotonic()
    assert [i["booking_id"] for i in reply.body["items"]] == [booking["id"]]
    assert answered - changed < 5, answered - changed
    assert answered - began < 15


async def test_a_long_poll_with_something_to_read_answers_at_once(world: World, db: Pool) -> None:
    site = await world.site()
    start = await head(world.api, db)
    await world.bed(site["id"])
    began = time.monotonic()
    reply = await feed(world.api, world.provider, after=start, wait=25)
    assert len(reply.body["items"]) == 1
    assert time.monotonic() - began < 5
    # And one with nothing comes back empty when its wait runs out, its cursor never back.
    began = time.monotonic()
    empty = await feed(world.api, world.provider, after=reply.body["next_cursor"], wait=0.3)
    assert empty.body["items"] == []
    assert await position(world.api, empty.body["next_cursor"]) >= await position(
        world.api, reply.body["next_cursor"]
    )
    assert 0.3 <= time.monotonic() - began < 5


LONG_POLLS = 500


async def test_500_long_polls_hold_no_connection_and_all_wake(
    world: World, db: Pool, clock: ManualClock, make_api: AppFactory
) -> None:
    site = await world.site()
    await world.bed(site["id"])
    # One key's 500 polls: its long-poll cap and feed budget opened (tests/api/test_long_polls.py
    # holds them).
    api = await make_api(
        settings_overrides={"long_polls_per_key": LONG_POLLS, "rate_limit_feed_reads_per_minute": 0}
    )
    start = await head(api, db)
    app = api.client.server.app
    listener = app[keys.EVENT_LISTENER]
    pool = app[keys.POOL]
    await until(lambda: listener.connected)
    url = str(api.client.make_url("/v1/events"))
    params = {"after": start, "wait": "20", "types": "booking.held"}
    headers = {"Authorization": f"Bearer {world.officer}"}

    async with aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0), timeout=aiohttp.ClientTimeout(total=40)
    ) as session:

        async def poll() -> tuple[int, dict[str, Any]]:
            async with session.get(url, params=params, headers=headers) as resp:
                return resp.status, json.loads(await resp.read())

        polls = [asyncio.create_task(poll()) for _ in range(LONG_POLLS)]
        try:
            await until(lambda: listener.waiting == LONG_POLLS, within=20)
            # Every one of them is parked, and none holds a pooled connection.
            state = pool_state(pool)
            assert state is not None
            assert state["waiting_acquirers"] == 0, state
            assert state["connections_in_use"] <= 1, state
            assert state["connections_max"] == 20

            # Another request is served beside them, while every one is still parked: none of
            # them stands in its way (it would queue for the pool behind 500 holders).
            forces = await asyncio.wait_for(api.get("/v1/forces", key=world.admin), 10)
            assert forces.status == 200
            assert listener.waiting == LONG_POLLS
            state = pool_state(pool)
            assert state is not None and state["waiting_acquirers"] == 0, state
            metrics = (await api.get("/metrics")).raw.decode()
            assert "pos_db_pool_waiting_acquirers 0.0" in metrics
            assert all(not p.done() for p in polls)

            changed = time.monotonic()
            booking = await world.book(site["id"], clock.now() + timedelta(hours=1))
            done = await asyncio.wait_for(asyncio.gather(*polls), 15)
            woke = time.monotonic() - changed
        finally:
            for p in polls:
                p.cancel()
    assert woke < 10, woke
    assert {status for status, _ in done} == {200}
    assert all([i["booking_id"] for i in body["items"]] == [booking["id"]] for _, body in done)
    assert listener.waiting == 0


async def test_the_listener_reconnects_and_readers_fall_back_meanwhile(
    world: World,
    db: Pool,
    clock: ManualClock,
    log_output: io.StringIO,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    site = await world.site()
    await world.bed(site["id"])
    listener = listener_of(world.api)
    await until(lambda: listener.connected)
    start = await head(world.api, db)
    # Kept down for 4 s after the loss: long enough to show readers do without it (they re-read
    # every FALLBACK_SECONDS), with room to spare on a loaded machine.
    monkeypatch.setattr(listener_module, "RETRY_FIRST_SECONDS", 4.0)

    async with db.acquire() as conn:
        killed = await conn.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE application_name = 'places-of-safety-listener'"
            " AND datname = current_database()"
        )
    assert killed == 1
    await until(lambda: not listener.connected)
    poll = asyncio.create_task(
        feed(world.api, world.officer, after=start, wait=20, types="booking.held")
    )
    await until(lambda: listener.waiting == 1)
    booking = await world.book(site["id"], clock.now() + timedelta(hours=1))
    assert not listener.connected  # no notification can come: the reader re-reads each second
    reply = await asyncio.wait_for(poll, 10)
    assert [i["booking_id"] for i in reply.body["items"]] == [booking["id"]]
    # Its own re-read found the event: the answer came while the listener was still down.
    assert not listener.connected

    await until(lambda: listener.connected, within=10)
    logged = [json.loads(line) for line in log_output.getvalue().splitlines()]
    mine = [e for e in logged if e.get("logger") == "service.listener" or "listener" in e["event"]]
    assert [(e["event"], e["level"]) for e in mine] == [
        ("event listener lost its connection", "warning"),
        ("event listener connected", "info"),
    ]


async def test_shutdown_lets_long_polls_go(make_api: AppFactory, db: Pool, world: World) -> None:
    api = await make_api()
    listener = listener_of(api)
    start = await head(world.api, db)
    url = str(api.client.make_url("/v1/events"))
    params = {"after": start, "wait": "30", "types": "booking.no_show"}
    headers = {"Authorization": f"Bearer {world.officer}"}

    async def poll_once() -> dict[str, Any]:
        # A session of its own: closing the test client would close its session first.
        async with (
            aiohttp.ClientSession() as session,
            session.get(url, params=params, headers=headers) as resp,
        ):
            assert resp.status == 200
            body: dict[str, Any] = json.loads(await resp.read())
            return body

    poll = asyncio.create_task(poll_once())
    await until(lambda: listener.waiting == 1)
    began = time.monotonic()
    closing = asyncio.create_task(api.client.server.close())
    reply = await asyncio.wait_for(poll, 10)
    await asyncio.wait_for(closing, 10)
    assert reply["items"] == []
    assert await position(world.api, reply["next_cursor"]) >= await position(world.api, start)
    assert time.monotonic() - began < 5


def _numbers_in(cursor: str) -> list[int] | None:
    """What a reader could make of a cursor without the service's key: the numbers of a
    base64-JSON cursor (the old form), or None when it decodes to nothing readable."""
    try:
        values = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (ValueError, UnicodeDecodeError):
        return None
    return [int(v) for v in values] if isinstance(values, list) else None


async def test_ids_and_cursors_tell_an_officer_nothing_of_another_forces_events(
    world: World, db: Pool, clock: ManualClock
) -> None:
    """Issue 14 item 8: with raw event ids (one global sequence) and cursors holding the
    server's transaction horizon, an officer of force A counted force B's events from the
    gaps between its own. Force B writes between two of A's events; A sees none of it."""
    _, other_officer = await second_force(world)
    site = await world.site()
    for _ in range(6):
        await world.bed(site["id"])
    await settled(db)
    start = await head(world.api, db)
    ours = [await world.book(site["id"], clock.now() + timedelta(hours=1))]
    before = await read_to_end(world.api, world.officer, start, types="booking.held")
    cursor_before = (await feed(world.api, world.officer, after=start, types="booking.held")).body[
        "next_cursor"
    ]
    for _ in range(4):
        await world.book(site["id"], clock.now() + timedelta(hours=1), key=other_officer)
    ours.append(await world.book(site["id"], clock.now() + timedelta(hours=1)))
    seen = await read_to_end(world.api, world.officer, start, types="booking.held")
    assert [i["booking_id"] for i in seen] == [b["id"] for b in ours]
    assert seen[0] == before[0]

    # Ids are random UUIDs: nothing to subtract.
    ids = [i["id"] for i in seen]
    assert all(uuid.UUID(i).version == 4 for i in ids), ids
    # Cursors decode to nothing: not B's event count, not the server's transaction ids, and
    # the same position read twice gives two different cursors.
    cursor_after = (await feed(world.api, world.officer, after=start, types="booking.held")).body[
        "next_cursor"
    ]
    again = (await feed(world.api, world.officer, after=start, types="booking.held")).body[
        "next_cursor"
    ]
    for cursor in (start, cursor_before, cursor_after, again):
        assert _numbers_in(cursor) is None, cursor
    assert cursor_after != again
    assert len(cursor_before) == len(cursor_after)
