"""No number of searches locates a safe house more finely than its coarse cell (issue 6, item 1).

An attacker with an officer key bisects `max_km` and `avoid_km` from points of their choosing:
each bisection recovers one number per point, and three points would place a site if the
numbers were its exact distances. Here they must be properties of the site's cell, the same
for two sites at different places in one cell, while the exclusion zone still never lets a site
through whose cell reaches into it.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from service.db import Pool
from service.queries.availability import POINT_DECIMALS
from tests.support.clock import ManualClock
from tests.support.geo import (
    EXCLUSION_MARGIN_KM,
    Cell,
    Point,
    cell_of,
    great_circle_km,
    next_origin,
)
from tests.support.world import World

RESOLUTION_KM = 1e-6  # what the attack bisects down to
EXPECT_KM = 1e-5  # how close the recovered threshold must be to the cell's number

CELL_OF = "SELECT coarse_cell($1, $2)"
SITE_CELL = "SELECT cell_south, cell_west, cell_north, cell_east FROM site WHERE id = $1"


async def _site_cell(db: Pool, site_id: str) -> Cell:
    async with db.acquire() as conn:
        row = await conn.fetchrow(SITE_CELL, site_id)
    assert row is not None
    return Cell(row["cell_south"], row["cell_west"], row["cell_north"], row["cell_east"])


async def _site_at(world: World, p: Point) -> dict[str, Any]:
    site = await world.site(location=p.location())
    await world.bed(site["id"])
    return site


async def _bisect(
    included: Callable[[float], Awaitable[bool]], lo: float, hi: float, *, grows: bool
) -> float:
    """The attack: the least x at which `included` turns (grows=True: out below, in from x on,
    as max_km) or the greatest x up to which it holds (grows=False, as avoid_km)."""
    while hi - lo > RESOLUTION_KM:
        mid = (lo + hi) / 2
        if await included(mid) == grows:
            hi = mid
        else:
            lo = mid
    return hi if grows else lo


def _membership(world: World, clock: ManualClock, a: str, b: str) -> Callable[..., Awaitable[bool]]:
    async def search(**params: Any) -> bool:
        start = clock.now()
        reply = await world.api.get(
            "/v1/availability",
            key=world.officer,
            params={"start": start, "end": start + timedelta(hours=24), "limit": 100, **params},
        )
        assert reply.status == 200, reply.body
        assert reply.body["total"] <= 100  # every match is on the page
        found = {i["site_id"] for i in reply.body["items"]}
        # Two sites at different places in one cell: no search may tell them apart.
        assert (a in found) == (b in found), (params, a in found, b in found)
        return a in found

    return search


def _as_typed(p: Point) -> Point:
    """A point as a person would type it (the service keeps 7 decimals of a search point)."""
    return Point(round(p.lat, 6), round(p.lon, 6))


def _scenarios() -> list[tuple[str, Point, list[Point] | None]]:
    lambeth = Point(51.4607, -0.1163)  # a demo site's town; the attack point first
    return [
        ("london", lambeth, [Point(51.6, -0.3)]),
        ("elsewhere", next_origin().moved(north_km=0.7, east_km=0.9), None),
    ]


@pytest.mark.slow
@pytest.mark.parametrize(("name", "base", "extra_points"), _scenarios())
async def test_bisecting_max_km_and_avoid_km_recovers_only_the_cell(
    world: World,
    db: Pool,
    clock: ManualClock,
    name: str,
    base: Point,
    extra_points: list[Point] | None,
) -> None:
    cell = await cell_of(db, base)
    a_at, b_at = cell.at(0.1, 0.15), cell.at(0.85, 0.9)  # near opposite corners of one cell
    a, b = await _site_at(world, a_at), await _site_at(world, b_at)
    assert await _site_cell(db, a["id"]) == cell == await _site_cell(db, b["id"])
    centre = cell.centre
    points = [
        *(extra_points or []),
        centre.moved(north_km=25, east_km=30),  # far to the north-east
        centre.moved(east_km=-6),  # due west
        cell.at(0.5, 0.3),  # inside the cell itself
        cell.at(-0.1, 0.5),  # 200 m south of the cell
        cell.at(-0.6, 1.7),  # off a corner
    ]
    search = _membership(world, clock, a["id"], b["id"])
    for p in map(_as_typed, points):
        exact_a, exact_b = great_circle_km(p, a_at), great_circle_km(p, b_at)
        # The two sites really are at different distances from p, yet every search from p has
        # treated them alike (_membership), so the numbers the attack recovers are theirs both.
        assert abs(exact_a - exact_b) > 0.05
        near = {"near_lat": p.lat, "near_lon": p.lon}

        async def within(km: float, near: dict[str, float] = near) -> bool:
            return await search(**near, max_km=km)

        async def outside_zone(km: float, near: dict[str, float] = near) -> bool:
            zone = {"avoid_lat": near["near_lat"], "avoid_lon": near["near_lon"]}
            return await search(**near, max_km=80, **zone, avoid_km=km)

        max_km = await _bisect(within, 0.0, 80.0, grows=True)
        avoid_km = await _bisect(outside_zone, 0.0, 80.0, grows=False)
        # What the attack learns is a number of the cell: the distance to its centre, and
        # (a metre short of) the distance to its nearest point; never either site's own.
        assert max_km == pytest.approx(great_circle_km(p, centre), abs=EXPECT_KM), (name, p)
        nearest = max(0.0, cell.nearest_km(p) - EXCLUSION_MARGIN_KM)
        assert avoid_km == pytest.approx(nearest, abs=EXPECT_KM), (name, p)


async def test_the_whole_km_shown_and_the_ranking_are_the_cells(
    world: World, db: Pool, clock: ManualClock
) -> None:
    origin = next_origin().moved(north_km=0.5, east_km=0.5)
    # Site a sits in the corner of its cell nearest the searcher, site b in the far corner of
    # a cell whose centre is nearer: by exact location a comes first, by cell b does.
    far_cell = await cell_of(db, origin.moved(north_km=7, east_km=7))
    a_at = far_cell.at(0.03, 0.03)
    to_far_centre = great_circle_km(origin, far_cell.centre)
    for step in range(60):
        near_cell = await cell_of(db, origin.moved(north_km=4 + step * 0.1, east_km=-6))
        b_at = near_cell.at(0.97, 0.03)
        to_near_centre = great_circle_km(origin, near_cell.centre)
        if (
            to_near_centre < to_far_centre - 0.1
            and great_circle_km(origin, b_at) > great_circle_km(origin, a_at) + 0.1
        ):
            break
    else:
        pytest.fail("no cell to set the two sites in")
    a, b = await _site_at(world, a_at), await _site_at(world, b_at)
    start = clock.now()
    reply = await world.api.get(
        "/v1/availability",
        key=world.officer,
        params={"start": start, "end": start + timedelta(hours=24), **origin.near(40)},
    )
    assert reply.status == 200, reply.body
    got = [(i["site_id"], i["distance_km"]) for i in reply.body["items"]]
    assert got == [(b["id"], round(to_near_centre)), (a["id"], round(to_far_centre))]


async def test_moving_a_site_moves_its_cell_and_owners_still_read_the_exact_location(
    world: World, db: Pool, clock: ManualClock
) -> None:
    origin = next_origin()
    first = origin.moved(north_km=3.3, east_km=4.1)
    site = await _site_at(world, first)
    assert await _site_cell(db, site["id"]) == await cell_of(db, first)
    moved = origin.moved(north_km=-12.7, east_km=9.9)
    reply = await world.api.patch(
        f"/v1/sites/{site['id']}", {"location": moved.location()}, key=world.provider
    )
    assert reply.status == 200, reply.body
    cell = await _site_cell(db, site["id"])
    assert cell == await cell_of(db, moved) and cell.contains(moved)
    for key in (world.provider, world.admin):
        read = await world.api.get(f"/v1/sites/{site['id']}", key=key)
        assert read.body["location"] == moved.location()
    start = clock.now()
    reply = await world.api.get(
        "/v1/availability",
        key=world.officer,
        params={"start": start, "end": start + timedelta(hours=24), **origin.near(40)},
    )
    (item,) = reply.body["items"]
    assert item["distance_km"] == round(great_circle_km(origin, cell.centre))
    assert "location" not in item


async def _excluded(world: World, clock: ManualClock, site_id: str, zone: Point, km: float) -> bool:
    start = clock.now()
    reply = await world.api.get(
        "/v1/availability",
        key=world.officer,
        params={
            "start": start,
            "end": start + timedelta(hours=24),
            **zone.near(80),
            "avoid_lat": zone.lat,
            "avoid_lon": zone.lon,
            "avoid_km": km,
        },
    )
    assert reply.status == 200, reply.body
    return site_id not in {i["site_id"] for i in reply.body["items"]}


async def test_a_zone_that_reaches_into_the_cell_excludes_the_site_however_far_the_site_is(
    world: World, db: Pool, clock: ManualClock
) -> None:
    cell = await cell_of(db, next_origin().moved(north_km=1, east_km=1))
    # Sites tucked in each corner; zones that just reach the far side of the cell, or just
    # miss the cell, from every side and corner.
    corners = {(0.02, 0.02), (0.02, 0.98), (0.98, 0.02), (0.98, 0.98)}
    sites = {c: await _site_at(world, cell.at(*c)) for c in corners}
    for north, east in [(-1.0, 0.5), (2.0, 0.5), (0.5, -1.0), (0.5, 2.0), (-1, -1), (2, 2)]:
        zone = cell.at(north, east)
        reach = cell.nearest_km(zone)
        for corner, site in sites.items():
            d = great_circle_km(zone, cell.at(*corner))
            # Reaching 1 m into the cell excludes even a site kilometres from the zone's edge.
            assert await _excluded(world, clock, site["id"], zone, reach + 0.001), (corner, d)
            # 10 m short of the cell, the zone lets every site of the cell through.
            assert not await _excluded(world, clock, site["id"], zone, reach - 0.01)


# --- the grid itself, in the database -------------------------------------------------------

GRID_ROWS = """
SELECT r, n, south, north,
       great_circle_km(south, 0, north, 0) AS tall,
       great_circle_km(south, 0, south, 360.0 / n) AS south_edge,
       great_circle_km(north, 0, north, 360.0 / n) AS north_edge
FROM generate_series(0, 8999) AS r,
     LATERAL (SELECT coarse_cells_in_row(r) AS n, r / 50.0 - 90 AS south,
                     (r + 1) / 50.0 - 90 AS north) AS row_
"""


async def test_every_cell_of_the_grid_is_at_least_2_km_on_every_side(db: Pool) -> None:
    async with db.acquire() as conn:
        rows = await conn.fetch(GRID_ROWS)
    assert len(rows) == 9000
    assert min(r["tall"] for r in rows) >= 2.0
    for r in rows:
        if r["n"] == 1:
            # A polar cap: one cell, 2.2 km across from its rim to the pole.
            assert r["r"] in (0, 8999), r
            continue
        # An edge along a parallel that is a point (at a pole) has no length to check.
        edges = [r["south_edge"]] if r["north"] == 90 else [r["north_edge"]]
        if r["south"] != -90:
            edges.append(r["south_edge"])
        assert min(edges) >= 2.0, dict(r)
    england = [r for r in rows if 49.8 <= r["south"] <= 55.9]
    assert min(min(r["south_edge"], r["north_edge"]) for r in england) > 2.2


LATITUDES = st.floats(min_value=-90, max_value=90, allow_nan=False)
LONGITUDES = st.floats(min_value=-180, max_value=180, allow_nan=False)
# The searcher's point, in cell widths from the cell's south-west corner: mostly around the cell,
# sometimes inside it, on an edge, or anywhere at all.
ACROSS = st.one_of(
    st.floats(min_value=-3, max_value=4, allow_nan=False),
    st.sampled_from([-1.0, 0.0, 0.5, 1.0, 2.0]),
)
NEAREST = """
SELECT coarse_cell($3, $4) AS cell,
       cell_nearest_km($1, $2, c[1], c[2], c[3], c[4]) AS nearest,
       cell_centre_km($1, $2, c[1], c[2], c[3], c[4]) AS centre
FROM (SELECT coarse_cell($3, $4) AS c) AS site
"""


@pytest.mark.slow
@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
    derandomize=True,
)
@given(
    site_lat=LATITUDES,
    site_lon=LONGITUDES,
    north=ACROSS,
    east=ACROSS,
    anywhere=st.one_of(st.none(), st.tuples(LATITUDES, LONGITUDES)),
)
async def test_the_exclusion_bound_never_exceeds_the_distance_to_any_point_of_the_cell(
    db: Pool,
    site_lat: float,
    site_lon: float,
    north: float,
    east: float,
    anywhere: tuple[float, float] | None,
) -> None:
    site = Point(site_lat, site_lon)
    async with db.acquire() as conn:
        (south, west, north_edge, east_edge) = await conn.fetchval(CELL_OF, site.lat, site.lon)
        cell = Cell(south, west, north_edge, east_edge)
        if anywhere is None:
            p = cell.at(north, east)
            p = Point(max(-90.0, min(90.0, p.lat)), ((p.lon + 180) % 360) - 180)
        else:
            p = Point(*anywhere)
        # As the service takes a search point (service/queries/availability.py).
        p = Point(round(p.lat, POINT_DECIMALS), round(p.lon, POINT_DECIMALS))
        row = await conn.fetchrow(NEAREST, p.lat, p.lon, site.lat, site.lon)
        # The grid is fixed: any point of the cell maps to the same cell.
        assert await conn.fetchval(CELL_OF, cell.centre.lat, cell.centre.lon) == list(row["cell"])
    assert cell.contains(site)
    nearest = row["nearest"]
    # Never more than the distance to any point of the cell: the site itself, its corners,
    # its centre (so a zone reaching any of them excludes the site)...
    samples = [site, cell.centre] + [cell.at(n, e) for n in (0, 1) for e in (0, 1)]
    for q in samples:
        assert nearest <= great_circle_km(p, q) - EXCLUSION_MARGIN_KM + 1e-9 or nearest == 0
    # ... and the true minimum, found numerically, less the 1 m margin: conservative, not loose.
    true = cell.nearest_km(p)
    assert nearest == pytest.approx(max(0.0, true - EXCLUSION_MARGIN_KM), abs=1e-6)
    assert row["centre"] == pytest.approx(great_circle_km(p, cell.centre), abs=1e-9)
    assert not math.isnan(nearest)


@pytest.mark.parametrize(
    ("site", "searcher"),
    [
        # On the equator and on the meridian the grid has an edge at exactly 0 degrees: a
        # search point a hair off it once made PostgreSQL fail with a float underflow (500).
        (Point(0.004, 177.71), Point(1e-200, 177.7)),
        (Point(-80.31, 0.004), Point(-80.3, 5e-324)),
    ],
)
async def test_a_search_point_a_hair_off_a_cell_edge_is_answered(
    world: World, db: Pool, clock: ManualClock, site: Point, searcher: Point
) -> None:
    cell = await cell_of(db, site)
    assert 0.0 in (cell.south, cell.west)
    made = await _site_at(world, site)
    start = clock.now()
    params = {
        "start": start,
        "end": start + timedelta(hours=24),
        "near_lat": searcher.lat,
        "near_lon": searcher.lon,
        "max_km": 20,
    }
    reply = await world.api.get("/v1/availability", key=world.officer, params=params)
    assert reply.status == 200, reply.body
    assert made["id"] in {i["site_id"] for i in reply.body["items"]}
    zone = {"avoid_lat": searcher.lat, "avoid_lon": searcher.lon, "avoid_km": 0.1}
    reply = await world.api.get("/v1/availability", key=world.officer, params={**params, **zone})
    assert reply.status == 200, reply.body
    assert made["id"] not in {i["site_id"] for i in reply.body["items"]}  # its cell touches
