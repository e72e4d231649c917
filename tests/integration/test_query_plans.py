"""No request path reads the ledger in full: with years of history seeded, the planner serves
search, hold, extend, occupancy and the bookings list from indexes (issue 7). EXPLAIN only,
never timed, so this guards the plan shape, not the machine's speed."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import asyncpg
import pytest

from service.migrate import migrate
from service.queries import allocations, audit, availability, bookings

# Per bed, this many past stays: enough history that reading the ledger in full is the
# expensive choice, as it is in production.
PAST_STAYS_PER_BED = 400
SITES = 12
BEDS_PER_SITE = 5
# The relations that grow with history: a request path must never scan them in full.
GROWING = {"allocation", "booking"}
# The events a change announces, as record_change() selects them.
CHANGE_EVENTS = "SELECT * FROM change_events($1, $2, $3, $4, $5)"

SEED = """
INSERT INTO force (code, name) VALUES ('plan-force', 'Plan Force');
INSERT INTO provider (id, name) VALUES ('00000000-0000-0000-0000-0000000000a1', 'Plan Provider');
INSERT INTO site (id, provider_id, name, address, area, lat, lon, genders_accepted,
                  booking_mode, phone)
SELECT gen_random_uuid(), '00000000-0000-0000-0000-0000000000a1', 'Plan site ' || g,
       g || ' Plan Street', 'Plan town', 52 + g * 0.05, -1 - g * 0.05, ARRAY['female'],
       'instant', '+44 113 496 0000'
FROM generate_series(1, {sites}) g;
INSERT INTO bed (id, site_id, label, room_type)
SELECT gen_random_uuid(), s.id, 'Room ' || r, 'single'
FROM site s CROSS JOIN generate_series(1, {beds}) r;
WITH past AS (
    SELECT gen_random_uuid() AS id, b.site_id, b.id AS bed_id,
           now() - (g + 1) * interval '3 days' AS start_at
    FROM bed b CROSS JOIN generate_series(1, {stays}) g
), alloc AS (
    INSERT INTO allocation (id, site_id, bed_id, kind, status, period, created_at, updated_at,
                            ended_at)
    SELECT id, site_id, bed_id, 'booking', 'departed',
           tstzrange(start_at, start_at + interval '2 days', '[)'), start_at, start_at,
           start_at + interval '2 days'
    FROM past
    RETURNING id
)
INSERT INTO booking (id, site_id, force_code, gender, custody_suite, created_at)
SELECT past.id, past.site_id, 'plan-force', 'female', 'Plan suite', past.start_at
FROM past JOIN alloc ON alloc.id = past.id;
ANALYZE;
"""


@pytest.fixture
async def ledger(fresh_database: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(fresh_database, server_settings={"jit": "off"})
    try:
        await migrate(conn)
        await conn.execute(SEED.format(sites=SITES, beds=BEDS_PER_SITE, stays=PAST_STAYS_PER_BED))
        yield conn
    finally:
        await conn.close()


def _nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from _nodes(child)


async def _plans(conn: asyncpg.Connection, sql: str, *args: object) -> list[dict[str, Any]]:
    """The custom and the generic plan (the service's prepared statements may use either)."""
    plans = []
    for mode in ("force_custom_plan", "force_generic_plan"):
        await conn.execute(f"SET plan_cache_mode = {mode}")
        statement = await conn.prepare("EXPLAIN (FORMAT JSON) " + sql)
        (raw,) = await statement.fetchrow(*args)
        plans.append((json.loads(raw) if isinstance(raw, str) else raw)[0]["Plan"])
    await conn.execute("RESET plan_cache_mode")
    return plans


async def _full_scans(conn: asyncpg.Connection, sql: str, *args: object) -> set[str]:
    """The growing relations a plan reads in full."""
    return {
        node["Relation Name"]
        for plan in await _plans(conn, sql, *args)
        for node in _nodes(plan)
        if node["Node Type"] == "Seq Scan" and node.get("Relation Name") in GROWING
    }


async def _ledger_indexes(conn: asyncpg.Connection, sql: str, *args: object) -> set[str]:
    """The indexes of the ledger a plan reads."""
    return {
        node["Index Name"]
        for plan in await _plans(conn, sql, *args)
        for node in _nodes(plan)
        if str(node.get("Index Name", "")).startswith("allocation_")
    }


async def _one(conn: asyncpg.Connection, sql: str, *args: object) -> UUID:
    value = await conn.fetchval(sql, *args)
    assert isinstance(value, UUID)
    return value


async def test_request_queries_never_scan_the_ledger_in_full(
    ledger: asyncpg.Connection,
) -> None:
    conn = ledger
    assert await conn.fetchval("SELECT count(*) FROM allocation") == (
        SITES * BEDS_PER_SITE * PAST_STAYS_PER_BED
    )
    now = datetime.now(UTC)
    later = now + timedelta(hours=24)
    site_id = await _one(conn, "SELECT id FROM site ORDER BY name LIMIT 1")
    bed_id = await _one(conn, "SELECT id FROM bed WHERE site_id = $1 LIMIT 1", site_id)
    booking_id = await _one(conn, "SELECT id FROM booking ORDER BY created_at DESC LIMIT 1")
    key_id = uuid4()
    searcher = (None, "officer", None, None, 0, 20, now - timedelta(hours=8))
    queries: dict[str, tuple[str, tuple[object, ...]]] = {
        "search": (
            availability.SEARCH_AND_RECORD,
            (now, later, now, "female", 0, False, 52.3, -1.3, 80.0, 51.5, -0.1, 10.0, *searcher),
        ),
        "search without points": (
            availability.SEARCH_AND_RECORD,
            (now, later, now, None, 0, False, None, None, None, None, None, None, *searcher),
        ),
        # Nothing found (the plan sites take women only): the need that emptied it is recorded.
        "search that finds nothing": (
            availability.SEARCH_AND_RECORD,
            (now, later, now, "male", 2, True, 52.3, -1.3, 80.0, 51.5, -0.1, 10.0, *searcher),
        ),
        "hold: free beds": (bookings.FREE_BEDS, (site_id, now, later, 0, False, now)),
        "hold: bookings not yet arrived": (bookings.OPEN_BOOKINGS, ("plan-force", key_id, now)),
        "hold: expire lapsed on the bed": (
            bookings.EXPIRE_LAPSED,
            (now, bed_id, 500, "system", "hold lapsed", "request lapsed", None),
        ),
        # A hold's events (sql/0022_record_change.sql: record_change() inserts these rows).
        "hold: events": (
            CHANGE_EVENTS,
            ("booking.held", booking_id, None, site_id, "booking_held"),
        ),
        "extend: lock": (bookings.LOCK_FOR_ACTION, (booking_id, now)),
        "extend: conflict": (allocations.FIND_CONFLICT, (bed_id, now, later, now)),
        "retire: future claim": (allocations.FIND_FUTURE_CLAIM, (bed_id, now)),
        "occupancy": (allocations.OCCUPANCY, (site_id, now, later, now)),
        # A booking and the lists read its history inside the same statement.
        "booking": (bookings.GET, (now, booking_id)),
        "bookings: officer's list": (
            bookings.LIST,
            (now, "plan-force", None, None, None, None, None, None, None, 51),
        ),
        "bookings: a site's list": (
            bookings.LIST,
            (now, None, None, None, site_id, None, None, None, None, 51),
        ),
        "bookings: next page": (
            bookings.LIST,
            (
                now,
                "plan-force",
                None,
                None,
                None,
                None,
                None,
                now - timedelta(days=30),
                booking_id,
                51,
            ),
        ),
    }
    full_scans = {
        name: scanned
        for name, (sql, args) in queries.items()
        if (scanned := await _full_scans(conn, sql, *args))
    }
    assert full_scans == {}, f"these read a growing table in full: {full_scans}"
    # change_events() is inlined, so its plan above was the plan of its own statement.
    args = queries["hold: events"][1]
    for plan in await _plans(conn, CHANGE_EVENTS, *args):
        assert {"booking", "allocation"} <= {n.get("Relation Name") for n in _nodes(plan)}


# The free-bed rule reads live claims only: the exclusion constraint's partial index, whose size
# follows today's occupancy, or a claim by its key. Any other index of the ledger spans history.
LIVE_ONLY = {"allocation_no_overlap", "allocation_pkey"}


async def test_the_free_bed_rule_reads_live_claims_only(ledger: asyncpg.Connection) -> None:
    conn = ledger
    now = datetime.now(UTC)
    later = now + timedelta(hours=24)
    site_id = await _one(conn, "SELECT id FROM site ORDER BY name LIMIT 1")
    bed_id = await _one(conn, "SELECT id FROM bed WHERE site_id = $1 LIMIT 1", site_id)
    searcher = (None, "officer", None, None, 0, 20, now - timedelta(hours=8))
    queries: dict[str, tuple[str, tuple[object, ...]]] = {
        "search": (
            availability.SEARCH_AND_RECORD,
            (now, later, now, "female", 0, False, 52.3, -1.3, 80.0, 51.5, -0.1, 10.0, *searcher),
        ),
        "hold: free beds": (bookings.FREE_BEDS, (site_id, now, later, 0, False, now)),
        "extend: conflict": (allocations.FIND_CONFLICT, (bed_id, now, later, now)),
        "retire: future claim": (allocations.FIND_FUTURE_CLAIM, (bed_id, now)),
    }
    wrong = {
        name: used - LIVE_ONLY
        for name, (sql, args) in queries.items()
        if (used := await _ledger_indexes(conn, sql, *args)) - LIVE_ONLY or not used
    }
    assert wrong == {}, f"these read the ledger beyond its live claims: {wrong}"


async def test_the_audit_log_is_read_through_its_indexes(ledger: asyncpg.Connection) -> None:
    """GET /v1/audit plans each call for its own filters (audit.PLAN_EACH_CALL): the rows of a
    booking or a key that appear rarely, late in a long log, come from an index, never from a
    walk of the whole log in id order (all a generic plan could do with optional filters)."""
    conn = ledger
    rare_key = UUID("00000000-0000-0000-0000-000000000999")
    await conn.execute(
        """
        INSERT INTO audit (at, api_key_id, role, action, object_type, object_id)
        SELECT now(),
               CASE WHEN g > 59990 THEN $1::uuid
                    ELSE ('00000000-0000-0000-0000-' || lpad((g % 50)::text, 12, '0'))::uuid END,
               'officer', 'read', 'booking',
               CASE WHEN g > 59990 THEN 'rare' ELSE (g % 20)::text END
        FROM generate_series(1, 60000) g
        """,
        rare_key,
    )
    await conn.execute("ANALYZE audit")
    filters = {
        "a booking": ("booking", "rare", None),
        "a key": (None, None, rare_key),
        "a booking and a key": ("booking", "rare", rare_key),
    }
    walks = {}
    for name, (object_type, object_id, key_id) in filters.items():
        await conn.execute("SET plan_cache_mode = force_custom_plan")
        statement = await conn.prepare("EXPLAIN (FORMAT JSON) " + audit.LIST)
        (raw,) = await statement.fetchrow(object_type, object_id, key_id, None, None, None, 51)
        await conn.execute("RESET plan_cache_mode")
        plan = (json.loads(raw) if isinstance(raw, str) else raw)[0]["Plan"]
        walks[name] = {
            node.get("Index Name") or node["Node Type"]
            for node in _nodes(plan)
            if node.get("Relation Name") == "audit"
        } & {"audit_pkey", "Seq Scan"}
    assert walks == {name: set() for name in filters}
