"""What a search shows of distance: whole kilometres of the coarse cell's distance.

The ranking itself (language fit, then distance) is done by the database with the search
(queries/availability.py), so only the page asked for leaves it."""

from __future__ import annotations


def shown_distance(distance_km: float | None) -> int | None:
    """Whole kilometres only. The distance is already to the site's coarse cell, not the site
    (queries/availability.py); rounding it keeps the shown number as coarse as the cell."""
    return None if distance_km is None else round(distance_km)
