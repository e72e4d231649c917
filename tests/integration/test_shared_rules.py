"""Rules shared by several statements are written once (sql/0025_shared_rules.sql) and inlined
by the planner, never called row by row. The search's hard filters are read by the search, the
hold's free beds and the explanation of an empty search alike; the report's group key by every
statement of the summary report. A function the planner inlines is never called, so with
`track_functions` on, the transaction's call counts show which were: the explanation itself
(planned apart, when called), and none of the filters."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from service.auth import hash_key
from service.db import Pool
from service.queries import availability, bookings, reports
from tests.support.world import bootstrap_admin

FILTERS = (
    "site_takes_gender",
    "site_allows_stay",
    "cell_outside_zone",
    "cell_distance_km",
    "within_km",
    "bed_meets_needs",
    # ... and what they call.
    "cell_centre_km",
    "cell_nearest_km",
    "great_circle_km",
)

# Sites and beds for the filters to read (rolled back with the test's transaction): some near
# the search's point, some in its exclusion zone; a family room and an accessible one.
SEED = """
WITH provider AS (
    INSERT INTO provider (id, name) VALUES (gen_random_uuid(), 'Filter Provider') RETURNING id
), sites AS (
    INSERT INTO site (id, provider_id, name, address, area, lat, lon, genders_accepted,
                      booking_mode, phone)
    SELECT gen_random_uuid(), provider.id, 'Filter site ' || g, g || ' Filter Street', 'Town',
           51.5 + g * 0.1, -0.1 - g * 0.1, ARRAY['female'], 'instant', '+44 113 496 0000'
    FROM provider CROSS JOIN generate_series(0, 9) g
    RETURNING id
)
INSERT INTO bed (id, site_id, label, room_type, max_dependants, wheelchair_accessible)
SELECT gen_random_uuid(), sites.id, 'Room ' || r, 'single', r, r = 2
FROM sites CROSS JOIN generate_series(0, 2) r
RETURNING site_id
"""

CALLS = """
SELECT p.proname, coalesce(pg_stat_get_xact_function_calls(p.oid), 0) AS calls
FROM pg_proc p
WHERE p.pronamespace = 'public'::regnamespace AND p.proname = ANY ($1::text[])
"""


async def test_the_filters_are_inlined_into_search_hold_and_explanation(db: Pool) -> None:
    now = datetime.now(UTC)
    later = now + timedelta(hours=24)
    async with db.acquire() as conn, conn.transaction():
        key_id = await conn.fetchval(
            "SELECT id FROM api_key WHERE key_hash = $1", hash_key(await bootstrap_admin(db))
        )
        site_id = (await conn.fetch(SEED))[0]["site_id"]
        searcher = (key_id, "officer", None, None, 0, 20, now - timedelta(hours=8))
        await conn.execute("SET LOCAL track_functions = 'all'")
        for needs in (("female", 0, False), ("male", 20, True)):
            # Both plans: the service's prepared statements may use either.
            for mode in ("force_custom_plan", "force_generic_plan"):
                await conn.execute(f"SET LOCAL plan_cache_mode = {mode}")
                await conn.fetch(
                    availability.SEARCH_AND_RECORD,
                    *(now, later, now, *needs, 52.3, -1.3, 80.0, 51.5, -0.1, 10.0, *searcher),
                )
                await conn.fetch(bookings.FREE_BEDS, site_id, now, later, 2, True, now)
        await conn.fetchval(
            "SELECT search_empty_cause($1, $2, 'male', 3, true, 52.3, -1.3, 80.0, 51.5, -0.1,"
            " 10.0)",
            now,
            later,
        )
        calls = dict(await conn.fetch(CALLS, ["search_empty_cause", *FILTERS]))
        await conn.execute("ROLLBACK AND CHAIN")  # the searches' log rows go
    assert set(calls) == {"search_empty_cause", *FILTERS}
    assert calls.pop("search_empty_cause") >= 1  # tracking counts SQL functions called
    assert calls == dict.fromkeys(FILTERS, 0)


async def test_the_report_key_is_inlined_into_every_report_statement(db: Pool) -> None:
    now = datetime.now(UTC)
    statements = {
        name: sql
        for name, sql in vars(reports).items()
        if name.isupper() and isinstance(sql, str) and "report_key(" in sql
    }
    assert len(statements) == 7  # steps, spans, searches, alerts, feedback, offered, used
    left: dict[str, list[str]] = {}
    async with db.acquire() as conn:
        for name, sql in statements.items():
            # Searches and bed-nights offered take one scope filter, as $4; the rest two.
            taken = 5 if "$5" in sql else 4
            args = (now - timedelta(days=30), now, "month", None, None)[:taken]
            plan = await conn.fetch("EXPLAIN (VERBOSE) " + sql, *args)
            text = "\n".join(row[0] for row in plan)
            if called := [f for f in ("report_key(", "report_month(") if f in text]:
                left[name] = called
    assert left == {}
