"""Limits: live holds per key and per force (in the database), requests per key (in process)."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import timedelta
from typing import Any

from service.db import Pool
from tests.conftest import AppFactory
from tests.support.api import Api, Reply
from tests.support.clock import ManualClock
from tests.support.metrics import metric
from tests.support.world import World, booking_body, new_key, unique


async def _site_with_beds(world: World, beds: int) -> dict[str, Any]:
    site = await world.site()
    for _ in range(beds):
        await world.bed(site["id"])
    return site


async def _hold(api: Api, key: str, site_id: str, clock: ManualClock, **kw: Any) -> Reply:
    return await api.post("/v1/bookings", booking_body(site_id, clock.now()), key=key, **kw)


async def _live_holds(db: Pool, force: str) -> int:
    async with db.acquire() as conn:
        return int(
            await conn.fetchval(
                "SELECT count(*) FROM allocation a JOIN booking b ON b.id = a.id"
                " WHERE b.force_code = $1 AND a.status = 'held'",
                force,
            )
        )


async def _force_with_officers(world: World, count: int) -> tuple[str, list[str]]:
    code = unique("f")
    reply = await world.api.post("/v1/forces", {"code": code, "name": code}, key=world.admin)
    assert reply.status == 201, reply.body
    keys = [await new_key(world.api, world.admin, role="officer", force=code) for _ in range(count)]
    return code, keys


# --- hold caps --------------------------------------------------------------------------------


async def test_a_request_awaiting_the_provider_still_counts_as_a_hold(
    world: World, clock: ManualClock
) -> None:
    site = await world.site(booking_mode="request")
    for _ in range(10):
        await world.bed(site["id"])
    for _ in range(5):
        held = await _hold(world.api, world.officer, site["id"], clock)
        assert held.status == 201
        confirmed = await world.act(held.body["id"], "confirm")
        assert confirmed["status"] == "pending"
    refused = await _hold(world.api, world.officer, site["id"], clock)
    assert refused.status == 429 and refused.problem_type == "too-many-holds", refused.body
    # Until the first request's answer is due: 1,800 s after it was confirmed.
    assert refused.headers["Retry-After"] == "1800"


async def test_one_key_cannot_hold_more_than_its_cap(world: World, clock: ManualClock) -> None:
    site = await _site_with_beds(world, 10)
    first = await _hold(world.api, world.officer, site["id"], clock)
    assert first.status == 201
    clock.advance(seconds=100)
    for _ in range(4):
        assert (await _hold(world.api, world.officer, site["id"], clock)).status == 201
    refused = await _hold(world.api, world.officer, site["id"], clock)
    assert refused.status == 429 and refused.problem_type == "too-many-holds", refused.body
    assert refused.content_type == "application/problem+json"
    # Until the first hold lapses: 900 s after it was made, 100 s ago.
    assert refused.headers["Retry-After"] == "800"
    # The rest of the site stays bookable for everyone else.
    other = await new_key(world.api, world.admin, role="officer", force=world.force)
    assert (await _hold(world.api, other, site["id"], clock)).status == 201
    # A confirmed booking is no longer a hold: it frees a place under the cap.
    assert (
        await world.api.post(f"/v1/bookings/{first.body['id']}/confirm", None, key=world.officer)
    ).status == 200
    assert (await _hold(world.api, world.officer, site["id"], clock)).status == 201
    again = await _hold(world.api, world.officer, site["id"], clock)
    assert again.status == 429 and again.headers["Retry-After"] == "900"
    # A lapsed hold no longer counts, even before the expiry job writes it off.
    clock.advance(seconds=900)
    assert (await _hold(world.api, world.officer, site["id"], clock)).status == 201
    metrics = (await world.api.get("/metrics")).raw.decode()
    assert metric(metrics, "pos_limit_refusals_total", limit="holds_per_key") == 2


async def test_twenty_concurrent_holds_by_one_key_get_exactly_the_cap(
    world: World, clock: ManualClock, db: Pool
) -> None:
    site = await _site_with_beds(world, 20)
    replies = await asyncio.gather(
        *(_hold(world.api, world.officer, site["id"], clock) for _ in range(20))
    )
    assert Counter(r.status for r in replies) == {201: 5, 429: 15}
    assert all(int(r.headers["Retry-After"]) >= 1 for r in replies if r.status == 429)
    assert await _live_holds(db, world.force) == 5


async def test_a_force_cannot_hold_more_than_its_cap_across_its_keys(
    world: World, make_api: AppFactory, clock: ManualClock, db: Pool
) -> None:
    api = await make_api(settings_overrides={"hold_cap_per_key": 3, "hold_cap_per_force": 7})
    site = await _site_with_beds(world, 20)
    force, officers = await _force_with_officers(world, 4)
    replies = await asyncio.gather(
        *(_hold(api, key, site["id"], clock) for key in officers for _ in range(4))
    )
    assert Counter(r.status for r in replies) == {201: 7, 429: 9}
    assert {r.problem_type for r in replies if r.status == 429} == {"too-many-holds"}
    assert await _live_holds(db, force) == 7
    # Another force is not held back by this one's cap.
    _, (stranger,) = await _force_with_officers(world, 1)
    assert (await _hold(api, stranger, site["id"], clock)).status == 201
    metrics = (await api.get("/metrics")).raw.decode()
    by_key = metric(metrics, "pos_limit_refusals_total", limit="holds_per_key")
    by_force = metric(metrics, "pos_limit_refusals_total", limit="holds_per_force")
    # At most two keys reach their own cap of 3 (7 holds), each refused once by it.
    assert by_key + by_force == 9 and by_force >= 7


async def test_a_refused_hold_is_not_stored_for_its_idempotency_key(
    world: World, make_api: AppFactory, clock: ManualClock
) -> None:
    api = await make_api(settings_overrides={"hold_cap_per_key": 1})
    site = await _site_with_beds(world, 3)
    first = await _hold(api, world.officer, site["id"], clock)
    body = booking_body(site["id"], clock.now())
    headers = {"Idempotency-Key": unique("hold")}
    refused = await api.post("/v1/bookings", body, key=world.officer, headers=headers)
    assert refused.status == 429
    cancelled = await api.post(
        f"/v1/bookings/{first.body['id']}/cancel", {"reason": "wrong site"}, key=world.officer
    )
    assert cancelled.status == 200
    retried = await api.post("/v1/bookings", body, key=world.officer, headers=headers)
    assert retried.status == 201 and "Idempotent-Replayed" not in retried.headers


# --- request rate limits ------------------------------------------------------------------------


def _search(key: str, clock: ManualClock) -> dict[str, Any]:
    return {
        "key": key,
        "params": {"end": clock.now() + timedelta(hours=24), "gender": "female"},
    }


async def test_searches_beyond_the_rate_limit_are_429_until_the_budget_refills(
    world: World, make_api: AppFactory, clock: ManualClock, db: Pool
) -> None:
    api = await make_api(settings_overrides={"rate_limit_searches_per_minute": 3})
    for _ in range(3):
        assert (await api.get("/v1/availability", **_search(world.officer, clock))).status == 200
    refused = await api.get("/v1/availability", **_search(world.officer, clock))
    assert refused.status == 429 and refused.problem_type == "rate-limited"
    assert refused.headers["Retry-After"] == "20"
    assert (await api.get("/v1/availability", **_search(world.officer, clock))).status == 429
    # Other keys have budgets of their own; reads other than searches are not limited.
    other = await new_key(world.api, world.admin, role="officer", force=world.force)
    assert (await api.get("/v1/availability", **_search(other, clock))).status == 200
    assert (await api.get("/v1/bookings", key=world.officer)).status == 200
    clock.advance(seconds=20)
    assert (await api.get("/v1/availability", **_search(world.officer, clock))).status == 200
    assert (await api.get("/v1/availability", **_search(world.officer, clock))).status == 429
    metrics = (await api.get("/metrics")).raw.decode()
    assert metric(metrics, "pos_limit_refusals_total", limit="searches") == 3


async def test_writes_beyond_the_rate_limit_are_429_and_not_stored(
    world: World, make_api: AppFactory, clock: ManualClock
) -> None:
    api = await make_api(settings_overrides={"rate_limit_writes_per_minute": 2})
    site = await _site_with_beds(world, 5)
    assert (await _hold(api, world.officer, site["id"], clock)).status == 201
    assert (await _hold(api, world.officer, site["id"], clock)).status == 201
    headers = {"Idempotency-Key": unique("hold")}
    body = booking_body(site["id"], clock.now())
    refused = await api.post("/v1/bookings", body, key=world.officer, headers=headers)
    assert refused.status == 429 and refused.problem_type == "rate-limited"
    assert refused.headers["Retry-After"] == "30"
    # Searches have a budget of their own.
    assert (await api.get("/v1/availability", **_search(world.officer, clock))).status == 200
    clock.advance(seconds=30)
    retried = await api.post("/v1/bookings", body, key=world.officer, headers=headers)
    assert retried.status == 201 and "Idempotent-Replayed" not in retried.headers
    metrics = (await api.get("/metrics")).raw.decode()
    assert metric(metrics, "pos_limit_refusals_total", limit="writes") == 1


async def test_feed_reads_beyond_the_rate_limit_are_429(
    world: World, make_api: AppFactory, clock: ManualClock
) -> None:
    """Issue 14 item 4: /v1/events has a budget of its own (a reader catching up must not
    spend the searches its officers need, nor be counted in the search log as searching)."""
    api = await make_api(settings_overrides={"rate_limit_feed_reads_per_minute": 2})
    for _ in range(2):
        assert (await api.get("/v1/events", key=world.officer)).status == 200
    refused = await api.get("/v1/events", key=world.officer)
    assert refused.status == 429 and refused.problem_type == "rate-limited", refused.body
    assert refused.headers["Retry-After"] == "30"
    assert (await api.get("/v1/availability", **_search(world.officer, clock))).status == 200
    clock.advance(seconds=30)
    assert (await api.get("/v1/events", key=world.officer)).status == 200
    metrics = (await api.get("/metrics")).raw.decode()
    assert metric(metrics, "pos_limit_refusals_total", limit="feed") == 1


async def test_a_zero_budget_means_no_limit(
    world: World, make_api: AppFactory, clock: ManualClock
) -> None:
    api = await make_api(settings_overrides={"rate_limit_searches_per_minute": 0})
    replies = [
        await api.get("/v1/availability", **_search(world.officer, clock)) for _ in range(50)
    ]
    assert {r.status for r in replies} == {200}


async def test_rate_limited_searches_reach_the_search_log(
    world: World, make_api: AppFactory, clock: ManualClock, db: Pool
) -> None:
    api = await make_api(settings_overrides={"rate_limit_searches_per_minute": 1})
    assert (await api.get("/v1/availability", **_search(world.officer, clock))).status == 200
    for _ in range(4):
        assert (await api.get("/v1/availability", **_search(world.officer, clock))).status == 429
    clock.advance(seconds=60)
    assert (await api.get("/v1/availability", **_search(world.officer, clock))).status == 200
    async with db.acquire() as conn:
        logged = await conn.fetch(
            "SELECT s.refused_before FROM search s JOIN api_key k ON k.id = s.api_key_id"
            " WHERE k.force_code = $1 ORDER BY s.id",
            world.force,
        )
    assert [r["refused_before"] for r in logged] == [0, 4]


async def test_a_search_refused_for_its_input_keeps_the_rate_limited_count(
    world: World, make_api: AppFactory, clock: ManualClock, db: Pool
) -> None:
    """The count of refused searches rides on the next search that runs: one answered 400 in
    between does not swallow it."""
    api = await make_api(settings_overrides={"rate_limit_searches_per_minute": 1})
    assert (await api.get("/v1/availability", **_search(world.officer, clock))).status == 200
    for _ in range(3):
        assert (await api.get("/v1/availability", **_search(world.officer, clock))).status == 429
    clock.advance(seconds=60)
    past = {"end": clock.now() - timedelta(hours=1), "gender": "female"}
    assert (await api.get("/v1/availability", key=world.officer, params=past)).status == 400
    clock.advance(seconds=60)
    assert (await api.get("/v1/availability", **_search(world.officer, clock))).status == 200
    async with db.acquire() as conn:
        logged = await conn.fetch(
            "SELECT s.refused_before FROM search s JOIN api_key k ON k.id = s.api_key_id"
            " WHERE k.force_code = $1 ORDER BY s.id",
            world.force,
        )
    assert [r["refused_before"] for r in logged] == [0, 3]
