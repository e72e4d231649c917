"""Places for availability tests: each test searches around an origin of its own, so sites
other tests made (and the demo data) never fall inside its radius."""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

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
