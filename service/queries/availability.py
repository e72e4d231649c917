"""Availability: active sites with at least one matching bed free for the whole window."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

import asyncpg

from service.db import Connection

# Hard filters, then the ranking (language, then fresh capacity before stale, then distance).
# Each hard filter is one SQL function (sql/0025_shared_rules.sql), inlined by the planner,
# that the explanation of an empty search (search_empty_cause) calls too.
# Coordinates stay in the database: only the distance leaves it. Every number computed from a
# site's position uses its coarse cell only (sql/0005_coarse_location.sql), never its exact
# location, so no number of searches from any points tells more than the cell: `near`,
# `max_km` and the ranking use the distance to the cell's centre; the exclusion zone leaves a
# site out when any point of its cell may be inside the zone.
# The search and its record in one statement (one round trip, atomic on its own): every
# search is counted for unmet demand, with the needs but never the searched points, and, when
# it found nothing, the need that emptied it (`empty_cause`, sql/0013_search_empty_cause.sql).
SEARCH_AND_RECORD = """
WITH site_match AS (
    SELECT s.id, s.name, p.name AS provider, s.area, s.booking_mode, s.languages,
           s.interpreter_on_call, s.capacity_confirmed_at,
           s.capacity_confirmed_at <= $19::timestamptz AS stale,
           cell_distance_km($7::float8, $8::float8, s.cell_south, s.cell_west, s.cell_north,
                            s.cell_east) AS distance_km
    FROM site s
    JOIN provider p ON p.id = s.provider_id
    WHERE s.status = 'active'
      AND site_takes_gender(s.genders_accepted, $4::text)
      AND site_allows_stay(s.max_stay_hours, $1::timestamptz, $2::timestamptz)
      AND cell_outside_zone($10::float8, $11::float8, $12::float8,
                            s.cell_south, s.cell_west, s.cell_north, s.cell_east)
), in_reach AS (
    SELECT * FROM site_match WHERE within_km(distance_km, $9::float8)
), free AS (
    -- The free-bed rule (sql/0007_free_bed_rule.sql): no live claim overlaps the window.
    SELECT b.site_id, count(*) AS free_beds
    FROM bed b
    WHERE b.site_id IN (SELECT id FROM in_reach)
      AND bed_meets_needs(b.removed_at, b.in_service, b.max_dependants,
                          b.wheelchair_accessible, $5::int, $6::bool)
      AND NOT EXISTS (SELECT 1 FROM live_claims($1, $2, $3) c WHERE c.bed_id = b.id)
    GROUP BY b.site_id
),
found AS (
    SELECT m.id AS site_id, m.name, m.provider, m.area, m.booking_mode, m.languages,
           m.interpreter_on_call, m.capacity_confirmed_at, m.stale, m.distance_km, f.free_beds
    FROM in_reach m
    JOIN free f ON f.site_id = m.id
),
recorded AS (
    INSERT INTO search (
        at, api_key_id, role, force_code, window_start, window_end, gender, dependants,
        wheelchair, language, near_given, max_km, avoid_km, sites_found, beds_found,
        refused_before, empty_cause
    )
    SELECT $3, $13, $14, $15, $1, $2, $4, $5, $6, $16, $7::float8 IS NOT NULL, $9, $12,
           count(*), coalesce(sum(free_beds), 0), $17,
           -- Only when nothing was found (sql/0013_search_empty_cause.sql): a search that
           -- finds sites neither runs nor plans it.
           CASE WHEN count(*) = 0
                THEN search_empty_cause($1, $2, $4, $5, $6, $7, $8, $9, $10, $11, $12) END
    FROM found
)
-- Ranked by language fit (0 staff speak it or none was asked, 1 interpreter on call, 2 neither),
-- then fresh capacity before stale (a stale site's free beds are less sure), then distance to
-- the cell, then name and id so equal ranks keep one order. Only the page
-- asked for leaves the database, with the count of every match beside it.
SELECT *, count(*) OVER () AS total
FROM found
ORDER BY CASE WHEN $16::text IS NULL OR $16 = ANY (languages) THEN 0
              WHEN interpreter_on_call THEN 1
              ELSE 2 END,
         stale, distance_km NULLS LAST, name COLLATE "C", site_id
LIMIT $18
"""


@dataclass(frozen=True)
class Searcher:
    """Who searched, as the search log records it."""

    api_key_id: UUID
    role: str
    force_code: str | None
    refused_before: int


async def search(
    conn: Connection,
    *,
    start: datetime,
    end: datetime,
    at: datetime,
    gender: str | None,
    dependants: int,
    wheelchair: bool,
    language: str | None,
    near: tuple[float, float] | None,
    max_km: float | None,
    avoid: tuple[float, float, float] | None,
    searcher: Searcher,
    limit: int,
    stale_before: datetime,
) -> list[asyncpg.Record]:
    """The best `limit` sites with a matching free bed, ranked, each row carrying the count of
    all matches (`total`); the search is recorded in the same statement, with the need that
    emptied it when it found nothing. Columns are named as the API names an item's fields
    (`distance_km` still unrounded). A site whose capacity was last confirmed at or before
    `stale_before` is `stale`."""
    near_lat, near_lon = _point(near)
    avoid_lat, avoid_lon = _point(None if avoid is None else avoid[:2])
    avoid_km = None if avoid is None else avoid[2]
    return await conn.fetch(
        SEARCH_AND_RECORD,
        start,
        end,
        at,
        gender,
        dependants,
        wheelchair,
        near_lat,
        near_lon,
        max_km,
        avoid_lat,
        avoid_lon,
        avoid_km,
        searcher.api_key_id,
        searcher.role,
        searcher.force_code,
        language,
        searcher.refused_before,
        limit,
        stale_before,
    )


# Search points to 1e-7 degree (about 1 cm, well inside the exclusion's 1 m margin): a
# coordinate such as 1e-200 would otherwise make PostgreSQL's float arithmetic fail with an
# underflow error (it refuses a product that rounds to zero) instead of answering.
POINT_DECIMALS = 7


def _point(point: tuple[float, float] | None) -> tuple[float | None, float | None]:
    if point is None:
        return None, None
    return round(point[0], POINT_DECIMALS), round(point[1], POINT_DECIMALS)
