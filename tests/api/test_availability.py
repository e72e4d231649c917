"""Availability: every hard filter, the exclusion zone, ranking, privacy, the search log."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from service.db import Pool
from tests.support.clock import ManualClock
from tests.support.geo import Point, cell_of, next_origin, shown_km
from tests.support.world import World


@pytest.fixture
def origin() -> Point:
    return next_origin()


async def _search(
    world: World, clock: ManualClock, key: str | None = None, hours: float = 24, **params: Any
) -> list[dict[str, Any]]:
    start = clock.now()
    reply = await world.api.get(
        "/v1/availability",
        key=key or world.officer,
        params={"start": start, "end": start + timedelta(hours=hours), **params},
    )
    assert reply.status == 200, reply.body
    items: list[dict[str, Any]] = reply.body["items"]
    assert reply.body["total"] == len(items)  # searches here never exceed the limit
    return items


async def _site(world: World, at: Point, beds: int = 1, **overrides: Any) -> dict[str, Any]:
    site = await world.site(location=at.location(), **overrides)
    for i in range(beds):
        await world.bed(site["id"], label=f"Room {i}")
    return site


def _ids(items: list[dict[str, Any]]) -> list[str]:
    return [i["site_id"] for i in items]


async def test_gender_is_a_hard_filter(world: World, clock: ManualClock, origin: Point) -> None:
    women = await _site(world, origin, genders_accepted=["female"])
    men = await _site(world, origin.moved(2), genders_accepted=["male", "non_binary"])
    assert _ids(await _search(world, clock, gender="male", **origin.near())) == [men["id"]]
    assert _ids(await _search(world, clock, gender="non_binary", **origin.near())) == [men["id"]]
    assert set(_ids(await _search(world, clock, **origin.near()))) == {women["id"], men["id"]}


async def test_dependants_and_wheelchair_count_only_matching_beds(
    world: World, clock: ManualClock, origin: Point
) -> None:
    site = await world.site(location=origin.location())
    await world.bed(site["id"], label="Single")
    await world.bed(site["id"], label="Family", room_type="family", max_dependants=3)
    await world.bed(site["id"], label="Access", wheelchair_accessible=True, max_dependants=1)
    plain = await _search(world, clock, **origin.near())
    assert plain[0]["free_beds"] == 3
    kids = await _search(world, clock, dependants=2, **origin.near())
    assert kids[0]["free_beds"] == 1
    assert await _search(world, clock, dependants=4, **origin.near()) == []
    wheel = await _search(world, clock, wheelchair=True, **origin.near())
    assert wheel[0]["free_beds"] == 1
    assert await _search(world, clock, wheelchair=True, dependants=2, **origin.near()) == []


async def test_only_sites_free_for_the_whole_window(
    world: World, clock: ManualClock, origin: Point
) -> None:
    site = await _site(world, origin)
    start = clock.now()
    await world.book(site["id"], start + timedelta(hours=20), hours=10)
    # The booking covers hours 20..30: a 24 h search from now overlaps it; a 12 h one does not.
    assert await _search(world, clock, hours=24, **origin.near()) == []
    assert _ids(await _search(world, clock, hours=12, **origin.near())) == [site["id"]]


async def test_window_beyond_the_sites_longest_stay_is_excluded(
    world: World, clock: ManualClock, origin: Point
) -> None:
    short = await _site(world, origin, max_stay_hours=24)
    long = await _site(world, origin.moved(1), max_stay_hours=72)
    assert set(_ids(await _search(world, clock, hours=24, **origin.near()))) == {
        short["id"],
        long["id"],
    }
    assert _ids(await _search(world, clock, hours=48, **origin.near())) == [long["id"]]


@pytest.mark.parametrize("status", ["paused", "closed"])
async def test_paused_and_closed_sites_never_appear(
    world: World, clock: ManualClock, origin: Point, status: str
) -> None:
    site = await _site(world, origin)
    assert _ids(await _search(world, clock, **origin.near())) == [site["id"]]
    reply = await world.api.patch(f"/v1/sites/{site['id']}", {"status": status}, key=world.provider)
    assert reply.status == 200
    assert await _search(world, clock, **origin.near()) == []


async def test_out_of_service_and_blocked_beds_are_not_free(
    world: World, clock: ManualClock, origin: Point
) -> None:
    site = await world.site(location=origin.location())
    out = await world.bed(site["id"], label="Out")
    blocked = await world.bed(site["id"], label="Blocked")
    await world.bed(site["id"], label="Free")
    assert (await _search(world, clock, **origin.near()))[0]["free_beds"] == 3
    await world.api.patch(
        f"/v1/sites/{site['id']}/beds/{out['id']}", {"in_service": False}, key=world.provider
    )
    start = clock.now()
    reply = await world.api.post(
        f"/v1/sites/{site['id']}/blocks",
        {
            "bed_id": blocked["id"],
            "start": (start + timedelta(hours=1)).isoformat(),
            "end": (start + timedelta(hours=2)).isoformat(),
            "reason": "leak",
        },
        key=world.provider,
    )
    assert reply.status == 201
    assert (await _search(world, clock, **origin.near()))[0]["free_beds"] == 1


async def test_no_site_inside_the_exclusion_zone_ever_appears(
    world: World, clock: ManualClock, origin: Point
) -> None:
    avoid = origin.moved(north_km=10)
    inside = await _site(world, avoid.moved(east_km=10))  # 10 km from the avoid point
    outside = await _site(world, avoid.moved(east_km=-20))  # 20 km away
    params = {"avoid_lat": avoid.lat, "avoid_lon": avoid.lon}
    found = await _search(world, clock, avoid_km=15, **params, **origin.near(100))
    assert _ids(found) == [outside["id"]]  # inside is 5 km within the 15 km zone
    # Even with every other preference pointing at it.
    found = await _search(
        world,
        clock,
        avoid_km=15,
        language="en",
        **params,
        near_lat=inside_lat(inside),
        near_lon=inside_lon(inside),
        max_km=100,
    )
    assert inside["id"] not in _ids(found)
    wider = await _search(world, clock, avoid_km=5, **params, **origin.near(100))
    assert set(_ids(wider)) == {inside["id"], outside["id"]}


def inside_lat(site: dict[str, Any]) -> float:
    return float(site["location"]["lat"])


def inside_lon(site: dict[str, Any]) -> float:
    return float(site["location"]["lon"])


async def test_ranked_by_language_then_distance(
    world: World, db: Pool, clock: ManualClock, origin: Point
) -> None:
    speaks_far = await _site(world, origin.moved(30), languages=["en", "ro"])
    interpreter_near = await _site(
        world, origin.moved(5), languages=["en"], interpreter_on_call=True
    )
    neither_nearest = await _site(world, origin.moved(1), languages=["en"])
    speaks_near = await _site(world, origin.moved(10), languages=["ro"])
    by_language = await _search(world, clock, language="ro", **origin.near())
    assert _ids(by_language) == [
        speaks_near["id"],
        speaks_far["id"],
        interpreter_near["id"],
        neither_nearest["id"],
    ]
    # Whole km from each site's coarse cell's centre: within about 1.6 km of 10, 30, 5 and 1.
    assert [i["distance_km"] for i in by_language] == [
        shown_km(origin, await cell_of(db, origin.moved(km))) for km in (10, 30, 5, 1)
    ]
    by_distance = await _search(world, clock, **origin.near())
    assert _ids(by_distance) == [
        neither_nearest["id"],
        interpreter_near["id"],
        speaks_near["id"],
        speaks_far["id"],
    ]


async def test_max_km_and_limit(world: World, clock: ManualClock, origin: Point) -> None:
    sites = [await _site(world, origin.moved(east_km=km)) for km in (3, 6, 9, 40)]
    within = await _search(world, clock, **origin.near(max_km=20))
    assert _ids(within) == [s["id"] for s in sites[:3]]
    reply = await world.api.get(
        "/v1/availability",
        key=world.officer,
        params={"end": clock.now() + timedelta(hours=24), "limit": 2, **origin.near(50)},
    )
    assert reply.body["total"] == 4
    assert _ids(reply.body["items"]) == [s["id"] for s in sites[:2]]


async def test_results_never_carry_address_or_coordinates(
    world: World, db: Pool, clock: ManualClock, origin: Point
) -> None:
    at = origin.moved(north_km=7.4)
    site = await _site(world, at, address="9 Hidden Row, Nowhere")
    (item,) = await _search(world, clock, **origin.near())
    assert set(item) == {
        "site_id",
        "name",
        "provider",
        "area",
        "distance_km",
        "free_beds",
        "booking_mode",
        "languages",
        "interpreter_on_call",
        "capacity_confirmed_at",
        "stale",
    }
    # Whole km from the site's coarse cell's centre (8 here), not from the site (7.4).
    assert item["distance_km"] == shown_km(origin, await cell_of(db, at))
    assert isinstance(item["distance_km"], int)
    assert "Hidden Row" not in str(item) and str(site["location"]["lat"])[:6] not in str(item)
    # Without `near` every site of the session matches (more than a page once other test
    # files have run): look at the first page only.
    no_near = await world.api.get(
        "/v1/availability", key=world.officer, params={"end": clock.now() + timedelta(hours=24)}
    )
    assert no_near.status == 200 and no_near.body["items"]
    assert all(i["distance_km"] is None for i in no_near.body["items"])


async def test_an_expired_hold_never_blocks_a_search(
    world: World, clock: ManualClock, origin: Point
) -> None:
    site = await _site(world, origin)
    await world.book(site["id"], clock.now())
    assert await _search(world, clock, **origin.near()) == []
    clock.advance(seconds=901)  # past HOLD_TTL_SECONDS; no sweep has run
    assert _ids(await _search(world, clock, **origin.near())) == [site["id"]]


async def test_each_search_is_recorded_without_the_points(
    world: World, db: Pool, clock: ManualClock, origin: Point
) -> None:
    await _site(world, origin)
    await _search(world, clock, gender="female", dependants=1, **origin.near())
    found = await _search(world, clock, language="ro", gender="female", **origin.near())
    await _search(
        world,
        clock,
        gender="male",
        avoid_lat=origin.lat,
        avoid_lon=origin.lon,
        avoid_km=3,
        **origin.near(),
    )
    async with db.acquire() as conn:
        rows = await conn.fetch(
            "SELECT * FROM search WHERE force_code = $1 ORDER BY id", world.force
        )
    assert [(r["gender"], r["dependants"], r["language"], r["sites_found"]) for r in rows] == [
        ("female", 1, None, 0),
        ("female", 0, "ro", 1),
        ("male", 0, None, 0),
    ]
    assert len(found) == 1 and rows[1]["beds_found"] == 1
    assert rows[2]["avoid_km"] == 3 and rows[2]["near_given"] is True
    columns = set(rows[0].keys())
    assert not {c for c in columns if "lat" in c or "lon" in c}


async def test_who_may_search(world: World, clock: ManualClock) -> None:
    params = {"end": clock.now() + timedelta(hours=24)}
    assert (await world.api.get("/v1/availability", key=world.admin, params=params)).status == 200
    forbidden = await world.api.get("/v1/availability", key=world.provider, params=params)
    assert forbidden.status == 403


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({}, "end"),
        ({"end": "2031-01-01T00:00:00"}, "end"),
        ({"hours": 24, "near_lat": 51.5}, "near_lon"),
        ({"hours": 24, "max_km": 10}, "max_km"),
        ({"hours": 24, "avoid_lat": 51.5, "avoid_lon": 0.1}, "avoid_km"),
        ({"hours": 24, "avoid_km": -1, "avoid_lat": 51.5, "avoid_lon": 0.1}, "avoid_km"),
        ({"hours": 24, "gender": "woman"}, "gender"),
        ({"hours": 24, "wheelchair": "sometimes"}, "wheelchair"),
        ({"hours": 24, "language": "romanian"}, "language"),
        ({"hours": 800}, "end"),
        ({"hours": 24, "start_offset_hours": -2}, "start"),
    ],
)
async def test_bad_searches_are_400(
    world: World, clock: ManualClock, params: dict[str, Any], field: str
) -> None:
    query = dict(params)
    start = clock.now() + timedelta(hours=query.pop("start_offset_hours", 0))
    if "hours" in query:
        query["start"] = start
        query["end"] = start + timedelta(hours=query.pop("hours"))
    reply = await world.api.get("/v1/availability", key=world.officer, params=query)
    assert reply.status == 400, reply.body
    assert field in reply.field_names()


async def test_the_answer_has_the_list_shape(world: World) -> None:
    """SPEC's list shape, `items` and `next_cursor` (issue 17): a search is ranked, not paged,
    so `next_cursor` is null; `total` says how many matched."""
    end = (datetime.now(UTC) + timedelta(hours=12)).isoformat()
    reply = await world.api.get("/v1/availability", key=world.officer, params={"end": end})
    assert reply.status == 200, reply.body
    assert set(reply.body) == {"items", "next_cursor", "total"}
    assert reply.body["next_cursor"] is None and reply.body["total"] >= len(reply.body["items"])
