"""Ranking availability: language fit first, then distance (SPEC section 5, Availability)."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal
from uuid import UUID


@dataclass(frozen=True)
class SiteMatch:
    site_id: UUID
    name: str
    provider: str
    area: str
    distance_km: float | None  # from `near` to the site's coarse cell's centre, never the site
    free_beds: int
    booking_mode: Literal["instant", "request"]
    languages: tuple[str, ...]
    interpreter_on_call: bool


def language_fit(site: SiteMatch, language: str | None) -> int:
    """0: staff speak it (or none was asked for); 1: interpreter on call; 2: neither."""
    if language is None or language in site.languages:
        return 0
    return 1 if site.interpreter_on_call else 2


def rank(sites: Iterable[SiteMatch], language: str | None) -> list[SiteMatch]:
    return sorted(
        sites,
        key=lambda s: (
            language_fit(s, language),
            math.inf if s.distance_km is None else s.distance_km,
            s.name,
            str(s.site_id),
        ),
    )


def shown_distance(distance_km: float | None) -> int | None:
    """Whole kilometres only. The distance is already to the site's coarse cell, not the site
    (queries/availability.py); rounding it keeps the shown number as coarse as the cell."""
    return None if distance_km is None else round(distance_km)
