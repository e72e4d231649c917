"""Why a search found nothing (issue 10 item 2): each recorded search that found no site stores
the first hard need that left none, applying them in the order none_active, gender,
dependants, wheelchair, max_stay, exclusion_zone, distance, no_free_bed; a search that found
sites stores NULL. The cause looks at every site in the database, so each test here has a
database of its own."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from service.db import Pool
from service.vocab import EmptyCause
from tests.support.clock import ManualClock
from tests.support.geo import Point
from tests.support.world import World

HERE = Point(53.8, -1.55)


@pytest.fixture
def database_dsn(migrated_database: str) -> str:
    """This test's own migrated database: no other test's sites."""
    return migrated_database


async def _search(world: World, clock: ManualClock, hours: float = 24, **params: Any) -> int:
    start = clock.now()
    reply = await world.api.get(
        "/v1/availability",
        key=world.officer,
        params={"start": start, "end": start + timedelta(hours=hours), **params},
    )
    assert reply.status == 200, reply.body
    return int(reply.body["total"])


async def _recorded(db: Pool) -> tuple[str | None, int]:
    row = await db.fetchrow("SELECT empty_cause, sites_found FROM search ORDER BY id DESC LIMIT 1")
    assert row is not None
    return row["empty_cause"], row["sites_found"]


async def _site(world: World, at: Point = HERE, beds: int = 1, **overrides: Any) -> str:
    site = await world.site(location=at.location(), **overrides)
    for i in range(beds):
        await world.bed(site["id"], label=f"Room {i}")
    return str(site["id"])


async def _expect(db: Pool, cause: EmptyCause | None) -> None:
    recorded, found = await _recorded(db)
    assert recorded == (None if cause is None else cause.value)
    assert (found > 0) == (cause is None)


async def test_a_search_that_finds_sites_records_no_cause(
    world: World, db: Pool, clock: ManualClock
) -> None:
    await _site(world)
    assert await _search(world, clock, gender="female", **HERE.near(10)) == 1
    await _expect(db, None)


async def test_none_active(world: World, db: Pool, clock: ManualClock) -> None:
    assert await _search(world, clock) == 0  # no site at all
    await _expect(db, EmptyCause.NONE_ACTIVE)
    await _site(world, status="paused")
    await _site(world, status="closed")
    assert await _search(world, clock, gender="male", dependants=3) == 0
    await _expect(db, EmptyCause.NONE_ACTIVE)


async def test_gender(world: World, db: Pool, clock: ManualClock) -> None:
    await _site(world, genders_accepted=["female"], max_stay_hours=12)
    await _site(world, status="paused", genders_accepted=["male"])
    # The gender empties it before the stay (too long for the site as well) is looked at.
    assert await _search(world, clock, hours=48, gender="male") == 0
    await _expect(db, EmptyCause.GENDER)


async def test_dependants(world: World, db: Pool, clock: ManualClock) -> None:
    site = await _site(world, genders_accepted=["female", "male"])
    # A family room out of service takes no one.
    await world.bed(site, label="Family", room_type="family", max_dependants=3, in_service=False)
    await _site(world, genders_accepted=["female"], beds=0)
    assert await _search(world, clock, gender="male", dependants=2) == 0
    await _expect(db, EmptyCause.DEPENDANTS)


async def test_wheelchair_needs_one_bed_meeting_both(
    world: World, db: Pool, clock: ManualClock
) -> None:
    site = await _site(world, beds=0)
    await world.bed(site, label="Family", room_type="family", max_dependants=2)
    await world.bed(site, label="Access", wheelchair_accessible=True)
    assert await _search(world, clock, dependants=2, wheelchair=True) == 0
    await _expect(db, EmptyCause.WHEELCHAIR)
    # Either need alone is met.
    assert await _search(world, clock, wheelchair=True) == 1
    await _expect(db, None)


async def test_max_stay(world: World, db: Pool, clock: ManualClock) -> None:
    await _site(world, max_stay_hours=24)
    assert await _search(world, clock, hours=48, wheelchair=False) == 0
    await _expect(db, EmptyCause.MAX_STAY)


async def test_exclusion_zone(world: World, db: Pool, clock: ManualClock) -> None:
    await _site(world, HERE)
    avoid = {"avoid_lat": HERE.lat, "avoid_lon": HERE.lon, "avoid_km": 10}
    assert await _search(world, clock, **avoid) == 0
    await _expect(db, EmptyCause.EXCLUSION_ZONE)


async def test_distance(world: World, db: Pool, clock: ManualClock) -> None:
    await _site(world, HERE.moved(east_km=40))
    # A second site fails earlier (the exclusion zone): the furthest any site gets counts.
    await _site(world, HERE.moved(north_km=-60))
    avoid = {"avoid_lat": HERE.lat - 0.6, "avoid_lon": HERE.lon, "avoid_km": 20}
    assert await _search(world, clock, **HERE.near(10), **avoid) == 0
    await _expect(db, EmptyCause.DISTANCE)


async def test_no_free_bed(world: World, db: Pool, clock: ManualClock) -> None:
    booked = await _site(world)
    await world.book(booked, clock.now() + timedelta(hours=2), hours=10)
    await _site(world, HERE.moved(east_km=3), beds=0)  # no bed at all: none is free either
    assert await _search(world, clock, **HERE.near(20)) == 0
    await _expect(db, EmptyCause.NO_FREE_BED)
    # A window after the stay finds the bed.
    assert await _search(world, clock, hours=1, **HERE.near(20)) == 1
    await _expect(db, None)
