"""Places for availability tests: each test searches around an origin of its own, so sites
other tests made (and the demo data) never fall inside its radius."""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

from service.db import Pool

KM_PER_DEGREE = 111.195  # great-circle km per degree of latitude on the service's Earth


@dataclass(frozen=True)
class Point:
    lat: float
    lon: float

    def moved(self, north_km: float = 0.0, east_km: float = 0.0) -> Point:
        lat = self.lat + north_km / KM_PER_DEGREE
        lon = self.lon + east_km / (KM_PER_DEGREE * math.cos(math.radians(self.lat)))
        return Point(lat, lon)

    def location(self) -> dict[str, float]:
        return {"lat": self.lat, "lon": self.lon}

    def near(self, max_km: float = 60) -> dict[str, float]:
        return {"near_lat": self.lat, "near_lon": self.lon, "max_km": max_km}


# Cells 5 degrees apart (at least ~380 km at these latitudes), handed out in turn: no two
# tests in a session share a neighbourhood. Random origins collided now and then (a site of
# another test inside a 100 km search), which made the availability tests flaky.
_CELLS = itertools.product(range(-45, 40, 5), range(-165, 170, 5))


def next_origin() -> Point:
    # Away from the UK, where the demo and capacity tests put their sites.
    lat, lon = next(_CELLS)
    return Point(float(lat), float(lon))


# --- the coarse grid, as an officer's search sees a site ------------------------------------

EARTH_RADIUS_KM = 6371.0088  # as great_circle_km in sql/0002_capacity.sql


def great_circle_km(a: Point, b: Point) -> float:
    dlat = math.radians(b.lat - a.lat)
    dlon = math.radians(b.lon - a.lon)
    h = (
        math.sin(dlat / 2) ** 2
        + math.cos(math.radians(a.lat)) * math.cos(math.radians(b.lat)) * math.sin(dlon / 2) ** 2
    )
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(h)))


@dataclass(frozen=True)
class Cell:
    """A site's coarse position, in degrees, as the database stores it with the site."""

    south: float
    west: float
    north: float
    east: float

    @property
    def centre(self) -> Point:
        return Point((self.south + self.north) / 2, (self.west + self.east) / 2)

    def contains(self, p: Point, slack: float = 1e-9) -> bool:
        return (
            self.south - slack <= p.lat <= self.north + slack
            and self.west - slack <= p.lon <= self.east + slack
        )

    def at(self, north: float, east: float) -> Point:
        """The point `north` and `east` of the way across the cell (0..1 each)."""
        return Point(
            self.south + north * (self.north - self.south),
            self.west + east * (self.east - self.west),
        )

    def nearest_km(self, p: Point) -> float:
        """Least great-circle km from p to any point of the cell, found numerically (no closed
        form shared with the SQL): 0 inside, else the least over the four edges, each searched
        by golden section (the distance along one edge has a single minimum)."""
        if self.contains(p, slack=0.0):
            return 0.0
        edges = [
            (Point(self.south, self.west), Point(self.south, self.east)),
            (Point(self.north, self.west), Point(self.north, self.east)),
            (Point(self.south, self.west), Point(self.north, self.west)),
            (Point(self.south, self.east), Point(self.north, self.east)),
        ]
        return min(_least_along(p, a, b) for a, b in edges)


async def cell_of(db: Pool, p: Point) -> Cell:
    """The cell the database puts a site at p in (sql/0005_coarse_location.sql)."""
    async with db.acquire() as conn:
        south, west, north, east = await conn.fetchval("SELECT coarse_cell($1, $2)", p.lat, p.lon)
    return Cell(south, west, north, east)


def shown_km(searcher: Point, cell: Cell) -> int:
    """The whole km a search from `searcher` shows for a site in `cell`: from the cell's centre."""
    return round(great_circle_km(searcher, cell.centre))


def _least_along(p: Point, a: Point, b: Point) -> float:
    """Least distance from p to the edge from a to b (a parallel or a meridian in degrees)."""

    def d(t: float) -> float:
        return great_circle_km(p, Point(a.lat + t * (b.lat - a.lat), a.lon + t * (b.lon - a.lon)))

    lo, hi = 0.0, 1.0
    ratio = (math.sqrt(5) - 1) / 2
    for _ in range(80):
        m1 = hi - ratio * (hi - lo)
        m2 = lo + ratio * (hi - lo)
        if d(m1) <= d(m2):
            hi = m2
        else:
            lo = m1
    return min(d(0.0), d(1.0), d((lo + hi) / 2))


# What the service takes off the nearest distance so rounding never lets a touching cell in
# (sql/0005_coarse_location.sql).
EXCLUSION_MARGIN_KM = 0.001
