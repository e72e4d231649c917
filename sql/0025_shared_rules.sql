-- Rules several statements share, each written once (issue 16 item 4): the search's hard
-- filters, and the summary report's grouping.
--
-- The search's hard filters: the search
-- (service/queries/availability.py SEARCH_AND_RECORD), the hold's free beds
-- (service/queries/bookings.py FREE_BEDS) and the explanation of an empty search
-- (search_empty_cause, sql/0013) all call these, so the explanation can no longer drift from
-- what the search does. A need not asked (NULL, 0, false) passes everything.
--
-- Each is LANGUAGE sql, one expression, not STRICT, no more volatile than its body: PostgreSQL
-- inlines it into the calling query (tests/integration/test_shared_rules.py checks that no
-- call is left in the plans), so the planner still sees the bare columns: the partial index
-- bed_search_idx still serves the bed filter, and the plan guards of
-- tests/integration/test_query_plans.py hold.

-- A site takes people of this gender.
CREATE FUNCTION site_takes_gender(genders_accepted text[], gender text) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN gender IS NULL OR gender = ANY (genders_accepted);

-- A site's longest stay covers the window [window_start, window_end).
CREATE FUNCTION site_allows_stay(
    max_stay_hours integer, window_start timestamptz, window_end timestamptz
) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN window_end - window_start <= make_interval(hours => max_stay_hours);

-- A site's cell is outside the exclusion zone of avoid_km around (avoid_lat, avoid_lon): no
-- point of the cell may be inside it. A cell further than avoid_km in latitude alone is outside
-- whatever its longitude (no path between two latitudes is shorter than the meridian, 111.19 km
-- a degree): most sites skip the exact bound. 111.0 and the exact bound's 1 m margin make this
-- test pass nothing the exact one would leave out, so answers are the same.
CREATE FUNCTION cell_outside_zone(
    avoid_lat double precision, avoid_lon double precision, avoid_km double precision,
    south double precision, west double precision, north double precision, east double precision
) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN avoid_lat IS NULL
    OR south - avoid_lat > (avoid_km + 0.001) / 111.0
    OR avoid_lat - north > (avoid_km + 0.001) / 111.0
    OR cell_nearest_km(avoid_lat, avoid_lon, south, west, north, east) >= avoid_km;

-- A site's distance from (near_lat, near_lon): to its cell's centre, so identical for every
-- site in the cell; NULL without a point (cell_centre_km is not STRICT, so it would not be).
CREATE FUNCTION cell_distance_km(
    near_lat double precision, near_lon double precision,
    south double precision, west double precision, north double precision, east double precision
) RETURNS double precision
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN CASE WHEN near_lat IS NULL THEN NULL
            ELSE cell_centre_km(near_lat, near_lon, south, west, north, east) END;

-- A site at this distance is within max_km; one with no distance is within no max_km.
CREATE FUNCTION within_km(distance_km double precision, max_km double precision)
RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN max_km IS NULL OR distance_km <= max_km;

-- A bed can be offered for these needs, free or not: not removed, in service, room for the
-- dependants, accessible when a wheelchair is needed. Its first two tests are the partial
-- index bed_search_idx's predicate, word for word.
CREATE FUNCTION bed_meets_needs(
    removed_at timestamptz, in_service boolean, max_dependants integer,
    wheelchair_accessible boolean, dependants integer, wheelchair boolean
) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN removed_at IS NULL AND in_service
    AND max_dependants >= dependants
    AND (wheelchair_accessible OR NOT wheelchair);

-- The explanation, now through the same filters (its stages and their order are sql/0013's).
-- Dependants and wheelchair ask for one bed meeting both; the dependants stage asks for the
-- dependants alone.
CREATE OR REPLACE FUNCTION search_empty_cause(
    window_start timestamptz, window_end timestamptz, gender text, dependants integer,
    wheelchair boolean, near_lat double precision, near_lon double precision,
    max_km double precision, avoid_lat double precision, avoid_lon double precision,
    avoid_km double precision
) RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
SELECT (ARRAY['none_active', 'gender', 'dependants', 'wheelchair', 'max_stay', 'exclusion_zone',
              'distance', 'no_free_bed'])[coalesce(max(stage), -1) + 2]
FROM (
    SELECT CASE
        WHEN NOT site_takes_gender(s.genders_accepted, gender) THEN 0
        -- Uncorrelated: each set of sites is read once (a hashed subplan), when first needed.
        WHEN dependants > 0 AND NOT s.id IN (
            SELECT b.site_id FROM bed b
            WHERE bed_meets_needs(b.removed_at, b.in_service, b.max_dependants,
                                  b.wheelchair_accessible, dependants, false)
        ) THEN 1
        WHEN wheelchair AND NOT s.id IN (
            SELECT b.site_id FROM bed b
            WHERE bed_meets_needs(b.removed_at, b.in_service, b.max_dependants,
                                  b.wheelchair_accessible, dependants, wheelchair)
        ) THEN 2
        WHEN NOT site_allows_stay(s.max_stay_hours, window_start, window_end) THEN 3
        WHEN NOT cell_outside_zone(avoid_lat, avoid_lon, avoid_km,
                                   s.cell_south, s.cell_west, s.cell_north, s.cell_east)
            THEN 4
        WHEN NOT within_km(cell_distance_km(near_lat, near_lon, s.cell_south, s.cell_west,
                                            s.cell_north, s.cell_east), max_km)
            THEN 5
        ELSE 6 END AS stage
    FROM site s
    WHERE s.status = 'active'
) AS staged
$$;

-- The summary report's group key (service/queries/reports.py): every statement groups its rows
-- by the caller's choice of force, provider, area or month (in UTC, 'YYYY-MM'). A statement
-- whose rows have no force (beds) or no provider or area (searches, alerts) passes NULL there:
-- the use case does not ask those statements for those groupings. Inlined like the filters.
CREATE FUNCTION report_month(at timestamptz) RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE
RETURN to_char(at AT TIME ZONE 'UTC', 'YYYY-MM');

CREATE FUNCTION report_key(
    group_by text, force_code text, provider_id uuid, area text, month text
) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN CASE group_by
           WHEN 'force' THEN force_code
           WHEN 'provider' THEN provider_id::text
           WHEN 'area' THEN area
           WHEN 'month' THEN month
       END;
