-- A site's coarse position: the cell of a fixed grid its location falls in. An officer's search
-- computes with the cell only (distance to its centre, nearest point of it to an exclusion
-- zone), so whatever any number of searches from any points reveal is a property of the cell,
-- the same for every site in it: never where in the cell a site is.
--
-- The grid is fixed (not centred on the site) and covers the whole Earth, since the API takes
-- any latitude. Rows are 1/50 degree of latitude tall: 2.224 km on the service's Earth (mean
-- radius 6371.0088 km, as great_circle_km). Each row is cut into as many equal cells as fit
-- around its poleward edge with each at least 1/50 degree of latitude long there, i.e.
-- floor(18000 * cos(poleward latitude)) cells (at least one): so every edge of every cell is
-- at least 2.224 km long (in England and Wales, 49.8 to 55.9 N, cells are about 2.22 km by
-- 2.22-2.24 km), and the rows that touch a pole are one cell each, a cap 2.224 km across.
-- Cells end exactly at -180 and 180 degrees of longitude, so none straddles the antimeridian.
-- The cell is stored with the site by the database itself (generated columns), so every write
-- path, a PATCH of the location included, moves it with the location.

CREATE FUNCTION coarse_row(lat double precision) RETURNS integer
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
RETURN least(floor((lat + 90) * 50)::integer, 8999);

CREATE FUNCTION coarse_cells_in_row(row_index integer) RETURNS integer
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
RETURN greatest(1, floor(18000 * cos(radians(greatest(
    abs(row_index::double precision / 50 - 90),
    abs((row_index + 1)::double precision / 50 - 90)
))))::integer);

-- [south, west, north, east] of the cell holding (lat, lon), in degrees.
CREATE FUNCTION coarse_cell(lat double precision, lon double precision)
RETURNS double precision[]
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
RETURN (
    SELECT ARRAY[
        r::double precision / 50 - 90,
        c::double precision * 360 / n - 180,
        (r + 1)::double precision / 50 - 90,
        (c + 1)::double precision * 360 / n - 180
    ]
    FROM (SELECT coarse_row(lat) AS r, coarse_cells_in_row(coarse_row(lat)) AS n) AS grid,
         LATERAL (SELECT least(floor((lon + 180) / 360 * n)::integer, n - 1) AS c) AS col
);

ALTER TABLE site
    ADD COLUMN cell_south double precision GENERATED ALWAYS AS ((coarse_cell(lat, lon))[1]) STORED,
    ADD COLUMN cell_west double precision GENERATED ALWAYS AS ((coarse_cell(lat, lon))[2]) STORED,
    ADD COLUMN cell_north double precision GENERATED ALWAYS AS ((coarse_cell(lat, lon))[3]) STORED,
    ADD COLUMN cell_east double precision GENERATED ALWAYS AS ((coarse_cell(lat, lon))[4]) STORED;

-- Great-circle km from a point to the centre of a cell: what `near`, `max_km` and the ranking
-- compare, identical for every site in the cell.
CREATE FUNCTION cell_centre_km(
    lat double precision, lon double precision,
    south double precision, west double precision, north double precision, east double precision
) RETURNS double precision
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
RETURN great_circle_km(lat, lon, (south + north) / 2, (west + east) / 2);

-- A lower bound of the great-circle km from a point to the nearest point of a cell: what the
-- exclusion zone compares, so a site is left out when any point of its cell may be inside it.
-- The nearest point is on the cell's boundary unless the point is inside (0). On a parallel
-- edge it is at the point's own longitude when the edge spans it, else a corner; on a
-- meridian edge it is the foot of the point on that meridian's great circle
-- (atan2(sin lat, cos lat cos dlon)) kept within the edge, else a corner. Each candidate is a
-- real point of the cell, so the least of them is the true minimum; 1 m is taken off so that
-- rounding in the degrees never lets a cell that touches the zone through.
CREATE FUNCTION cell_nearest_km(
    lat double precision, lon double precision,
    south double precision, west double precision, north double precision, east double precision
) RETURNS double precision
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
RETURN greatest(0.0, least(
    great_circle_km(lat, lon, south, west),
    great_circle_km(lat, lon, south, east),
    great_circle_km(lat, lon, north, west),
    great_circle_km(lat, lon, north, east),
    great_circle_km(
        lat, lon,
        least(north, greatest(south, degrees(atan2(
            sin(radians(lat)), cos(radians(lat)) * cos(radians(lon - west))
        )))),
        west
    ),
    great_circle_km(
        lat, lon,
        least(north, greatest(south, degrees(atan2(
            sin(radians(lat)), cos(radians(lat)) * cos(radians(lon - east))
        )))),
        east
    ),
    -- least() skips the NULL when the cell does not span the point's longitude.
    CASE WHEN lon BETWEEN west AND east
         THEN great_circle_km(lat, lon, least(north, greatest(south, lat)), lon) END
) - 0.001);
