"""Metrics worth scraping: durations by route and status, the pool, holds by outcome, sweeps."""

from __future__ import annotations

from tests.conftest import AppFactory
from tests.support.api import Api
from tests.support.clock import ManualClock
from tests.support.until import until
from tests.support.world import World, booking_body


async def _samples(api: Api) -> dict[str, float]:
    text = (await api.get("/metrics")).raw.decode()
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            samples[name] = float(value)
    return samples


async def test_holds_are_counted_by_outcome_and_timed_by_status(
    world: World, clock: ManualClock
) -> None:
    site = await world.site()
    await world.bed(site["id"])
    held = await world.api.post(
        "/v1/bookings", booking_body(site["id"], clock.now()), key=world.officer
    )
    full = await world.api.post(
        "/v1/bookings", booking_body(site["id"], clock.now()), key=world.officer
    )
    assert (held.status, full.status) == (201, 409)
    samples = await _samples(world.api)
    assert samples['pos_hold_attempts_total{outcome="held"}'] == 1
    assert samples['pos_hold_attempts_total{outcome="no_capacity"}'] == 1
    timed = (
        'pos_http_request_duration_seconds_count{method="POST",route="/v1/bookings",status="%s"}'
    )
    assert samples[timed % "201"] == 1 and samples[timed % "409"] == 1


async def test_the_pool_is_visible(world: World) -> None:
    samples = await _samples(world.api)
    assert samples["pos_db_pool_connections_max"] == 20
    assert 1 <= samples["pos_db_pool_connections"] <= 20
    assert samples["pos_db_pool_connections_in_use"] >= 0
    assert samples["pos_db_pool_waiting_acquirers"] == 0


async def test_expiry_sweeps_are_counted(
    world: World, make_api: AppFactory, clock: ManualClock
) -> None:
    api = await make_api(run_jobs=True, settings_overrides={"sweep_interval_seconds": 0.05})
    site = await world.site()
    await world.bed(site["id"])
    await world.book(site["id"], clock.now())
    clock.advance(seconds=901)

    async def swept() -> bool:
        return (await _samples(api)).get("pos_expiry_swept_total", 0) >= 1

    await until(swept, what="the sweep to be counted")
    assert (await _samples(api))['pos_expiry_sweeps_total{outcome="ok"}'] >= 1
