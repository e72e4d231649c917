-- Why a search found nothing (issue 10 item 2): the first hard need that leaves no site when
-- the needs are applied in the order none_active, gender, dependants, wheelchair, max_stay,
-- exclusion_zone, distance, no_free_bed. Each active site gets as far along the needs as it
-- can (0: it fails the gender, 1: the dependants, ...; 6: it meets them all, so only a free
-- bed is missing); the furthest any site gets names the need that left none. A need not asked
-- passes every site. Dependants and wheelchair ask for one bed in service meeting both, free
-- or not. The tests are the search's own (queries/availability.py SEARCH_AND_RECORD).
--
-- A function, not a CTE of the search: the search calls it only when it found nothing, and a
-- search that finds sites then pays neither for running it nor for planning it (as a CTE it
-- was never run but was planned every time: about 0.7 ms more planning a search). Not
-- inlined (its body has FROM and an aggregate), so it is planned only when called.
CREATE FUNCTION search_empty_cause(
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
        WHEN NOT (gender IS NULL OR gender = ANY (s.genders_accepted)) THEN 0
        -- Uncorrelated: each set of sites is read once (a hashed subplan), when first needed.
        WHEN dependants > 0 AND NOT s.id IN (
            SELECT b.site_id FROM bed b
            WHERE b.removed_at IS NULL AND b.in_service AND b.max_dependants >= dependants
        ) THEN 1
        WHEN wheelchair AND NOT s.id IN (
            SELECT b.site_id FROM bed b
            WHERE b.removed_at IS NULL AND b.in_service AND b.max_dependants >= dependants
              AND b.wheelchair_accessible
        ) THEN 2
        WHEN window_end - window_start > make_interval(hours => s.max_stay_hours) THEN 3
        WHEN NOT (avoid_lat IS NULL
                  OR s.cell_south - avoid_lat > (avoid_km + 0.001) / 111.0
                  OR avoid_lat - s.cell_north > (avoid_km + 0.001) / 111.0
                  OR cell_nearest_km(avoid_lat, avoid_lon, s.cell_south, s.cell_west,
                                     s.cell_north, s.cell_east) >= avoid_km)
            THEN 4
        WHEN NOT (max_km IS NULL
                  OR cell_centre_km(near_lat, near_lon, s.cell_south, s.cell_west, s.cell_north,
                                    s.cell_east) <= max_km)
            THEN 5
        ELSE 6 END AS stage
    FROM site s
    WHERE s.status = 'active'
) AS staged
$$;
