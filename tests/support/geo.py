"""Places for availability tests: each test searches around its own random origin, so sites
other tests made (and the demo data) never fall inside its radius."""

from __future__ import annotations

import math
import random
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


def random_origin() -> Point:
    # Mid-latitudes away from the UK, where the demo and capacity tests put their sites.
    return Point(random.uniform(-50, 40), random.uniform(-170, 170))
