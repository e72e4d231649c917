"""Long polls of GET /v1/events under load (issue 14 item 4): a write wakes only the polls whose
scope can see its events, a key may park only so many polls, and a revoked key's polls end.

Feed reads are counted per scope by wrapping the one function every read goes through
(service.queries.events.page), so "not woken" is a count, not a timing.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from datetime import timedelta
from typing import Any

import aiohttp
import pytest

from service.db import Pool
from service.queries import events as event_queries
from tests.api.test_events_feed import feed, head, listener_of, second_force, settled
from tests.conftest import AppFactory
from tests.support.api import Api
from tests.support.clock import ManualClock
from tests.support.metrics import metric
from tests.support.until import until
from tests.support.world import World, new_key

POLLS_PER_KEY = 5
UNRELATED_KEYS = 20  # per unrelated scope: 2 scopes x 20 keys x 5 polls = 200 parked polls


def count_reads(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """Feed reads from now on, by the scope read: a force code, a provider id, or "all"."""
    reads: Counter[str] = Counter()
    real = event_queries.page

    async def counting(conn: Any, **kwargs: Any) -> event_queries.Read:
        scope = kwargs.get("force_code") or kwargs.get("provider_id") or "all"
        reads[str(scope)] += 1
        return await real(conn, **kwargs)

    monkeypatch.setattr(event_queries, "page", counting)
    return reads


class Polls:
    """Long polls sent over real sockets (the test client's session limits connections)."""

    def __init__(self, api: Api, session: aiohttp.ClientSession) -> None:
        self.url = str(api.client.make_url("/v1/events"))
        self.session = session
        self.tasks: list[asyncio.Task[tuple[int, dict[str, Any]]]] = []

    def start(self, key: str, **params: str) -> asyncio.Task[tuple[int, dict[str, Any]]]:
        async def poll() -> tuple[int, dict[str, Any]]:
            headers = {"Authorization": f"Bearer {key}"}
            async with self.session.get(self.url, params=params, headers=headers) as resp:
                return resp.status, json.loads(await resp.read())

        task = asyncio.create_task(poll())
        self.tasks.append(task)
        return task

    def cancel(self) -> None:
        for task in self.tasks:
            task.cancel()


def session() -> aiohttp.ClientSession:
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0), timeout=aiohttp.ClientTimeout(total=60)
    )


async def test_a_write_wakes_only_the_long_polls_whose_scope_sees_it(
    world: World, db: Pool, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = await world.site()
    for _ in range(4):
        await world.bed(site["id"])
    # Unrelated scopes: the other provider's keys (none of the writes touch its sites), and
    # another force's keys following its own bookings (the writes are not its bookings).
    other_force, _ = await second_force(world)
    other_provider_keys = [
        await new_key(world.api, world.admin, role="provider", provider_id=world.other_provider_id)
        for _ in range(UNRELATED_KEYS)
    ]
    other_force_keys = [
        await new_key(world.api, world.admin, role="officer", force=other_force)
        for _ in range(UNRELATED_KEYS)
    ]
    await settled(db)
    start = await head(world.api, db)
    listener = listener_of(world.api)
    await until(lambda: listener.connected)
    reads = count_reads(monkeypatch)
    wait = {"after": start, "wait": "30"}

    async with session() as http:
        polls = Polls(world.api, http)
        try:
            unrelated = [
                polls.start(key, **wait)
                for key in other_provider_keys
                for _ in range(POLLS_PER_KEY)
            ] + [
                polls.start(key, **wait, types="booking.held,booking.cancelled")
                for key in other_force_keys
                for _ in range(POLLS_PER_KEY)
            ]
            # Related: the site's provider sees the holds there; the writing force's own
            # reader waits for the cancellation that ends the stream of writes.
            related = [polls.start(world.provider, **wait) for _ in range(POLLS_PER_KEY)]
            last = polls.start(world.officer, **wait, types="booking.cancelled")
            parked = len(unrelated) + len(related) + 1
            assert len(unrelated) == 200
            await until(lambda: listener.waiting == parked, within=30)
            # Parked: their first reads are done (polls asking the same read at once share
            # it, so there may be fewer reads than polls).
            parked_reads = Counter(reads)
            metrics = (await world.api.get("/metrics")).raw.decode()
            woken_before = metric(metrics, "pos_event_feed_reads_total", cause="woken")

            booked = [
                await world.book(site["id"], clock.now() + timedelta(hours=1)) for _ in range(4)
            ]
            await world.act(booked[0]["id"], "cancel", reason="not needed")
            status, body = await asyncio.wait_for(last, 15)
            assert status == 200
            assert [i["booking_id"] for i in body["items"]] == [booked[0]["id"]]
            done = await asyncio.wait_for(asyncio.gather(*related), 15)
            assert all(status == 200 and body["items"] for status, body in done)

            # The 200 unrelated polls were never woken: not one read again, all still wait.
            for scope in (str(world.other_provider_id), other_force):
                assert 1 <= reads[scope] == parked_reads[scope] <= UNRELATED_KEYS * POLLS_PER_KEY
            assert not any(p.done() for p in unrelated)
            assert listener.waiting == len(unrelated)
            # The woken ones read again: the provider's five polls share their reads.
            metrics = (await world.api.get("/metrics")).raw.decode()
            woken = metric(metrics, "pos_event_feed_reads_total", cause="woken") - woken_before
            rereads = sum((reads - parked_reads).values())
            assert woken == rereads
            assert 2 <= woken < 10
        finally:
            polls.cancel()


async def test_a_key_may_park_only_so_many_long_polls(
    make_api: AppFactory, world: World, db: Pool, clock: ManualClock
) -> None:
    api = await make_api(settings_overrides={"long_polls_per_key": 2})
    site = await world.site()
    await world.bed(site["id"])
    listener = listener_of(api)
    await until(lambda: listener.connected)
    start = await head(api, db)
    params = {"after": start, "wait": "20", "types": "booking.held"}
    async with session() as http:
        polls = Polls(api, http)
        try:
            first = [polls.start(world.officer, **params) for _ in range(2)]
            await until(lambda: listener.waiting == 2)
            refused = await api.get("/v1/events", key=world.officer, params=params)
            assert refused.status == 429, refused.body
            assert refused.problem_type == "too-many-long-polls"
            assert 1 <= int(refused.headers["Retry-After"]) <= 20
            # A read that does not wait, and another key's poll, are not refused.
            assert (await feed(api, world.officer, after=start)).status == 200
            other = await new_key(api, world.admin, role="officer", force=world.force)
            assert (await feed(api, other, after=start, wait=0.1)).status == 200
            metrics = (await api.get("/metrics")).raw.decode()
            assert metric(metrics, "pos_limit_refusals_total", limit="long_polls") == 1

            # A poll that answers frees its place.
            await world.book(site["id"], clock.now() + timedelta(hours=1))
            assert {s for s, _ in await asyncio.wait_for(asyncio.gather(*first), 15)} == {200}
            await until(lambda: listener.waiting == 0)
            again = await feed(api, world.officer, after=start, wait=0.1)
            assert again.status == 200
        finally:
            polls.cancel()


async def test_a_revoked_keys_parked_poll_ends_at_once(world: World, db: Pool) -> None:
    reply = await world.api.post(
        "/v1/api-keys", {"name": "laptop", "role": "officer", "force": world.force}, key=world.admin
    )
    assert reply.status == 201
    key, key_id = reply.body["key"], reply.body["id"]
    listener = listener_of(world.api)
    await until(lambda: listener.connected)
    start = await head(world.api, db)
    async with session() as http:
        polls = Polls(world.api, http)
        try:
            poll = polls.start(key, after=start, wait="25")
            await until(lambda: listener.waiting == 1)
            revoked = await world.api.delete(f"/v1/api-keys/{key_id}", key=world.admin)
            assert revoked.status == 204, revoked.body
            # Ended by the revocation, long before its 25 s wait would have run out.
            status, body = await asyncio.wait_for(poll, 10)
        finally:
            polls.cancel()
    assert status == 401, body
    assert "revoked" in body["detail"]
    assert listener.waiting == 0
