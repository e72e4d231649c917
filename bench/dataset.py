"""The national data set: sites across England and Wales, ten beds each, a third occupied now,
and years of past stays, written with set-based SQL (generate_series), never row by row."""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from service.demo import FORCES

BEDS_PER_SITE = 10
PROVIDERS = 60
# Past stays of one bed are a week apart (a stay lasts 1-3 days), so they never overlap, and a
# million allocations reach about two years back.
SLOT = "7 days"
CURRENT_SUITE = "Bench custody suite (current stay)"
PAST_SUITE = "Bench custody suite"

# Town centres of England and Wales; London counts four times (it has the most sites).
# Sites are scattered up to ~9 km around them, which keeps them on land.
TOWNS: list[tuple[str, float, float]] = [
    ("London", 51.5074, -0.1278),
    ("London", 51.5074, -0.1278),
    ("London", 51.5074, -0.1278),
    ("London", 51.5074, -0.1278),
    ("Birmingham", 52.4862, -1.8904),
    ("Manchester", 53.4808, -2.2426),
    ("Leeds", 53.8008, -1.5491),
    ("Liverpool", 53.4084, -2.9916),
    ("Bristol", 51.4545, -2.5879),
    ("Sheffield", 53.3811, -1.4701),
    ("Newcastle upon Tyne", 54.9783, -1.6178),
    ("Nottingham", 52.9548, -1.1581),
    ("Leicester", 52.6369, -1.1398),
    ("Cardiff", 51.4816, -3.1791),
    ("Swansea", 51.6214, -3.9436),
    ("Plymouth", 50.3755, -4.1427),
    ("Southampton", 50.9097, -1.4044),
    ("Norwich", 52.6309, 1.2974),
    ("Cambridge", 52.2053, 0.1218),
    ("Oxford", 51.7520, -1.2577),
    ("Exeter", 50.7184, -3.5339),
    ("Hull", 53.7676, -0.3274),
    ("York", 53.9600, -1.0873),
    ("Carlisle", 54.8925, -2.9329),
    ("Stoke-on-Trent", 53.0027, -2.1794),
    ("Coventry", 52.4068, -1.5197),
    ("Brighton", 50.8225, -0.1372),
    ("Reading", 51.4543, -0.9781),
    ("Ipswich", 52.0567, 1.1482),
    ("Wrexham", 53.0462, -2.9930),
    ("Aberystwyth", 52.4153, -4.0829),
    ("Bangor", 53.2274, -4.1293),
    ("Truro", 50.2632, -5.0510),
    ("Middlesbrough", 54.5742, -1.2350),
    ("Preston", 53.7632, -2.7031),
    ("Canterbury", 51.2802, 1.0789),
    ("Lincoln", 53.2307, -0.5406),
    ("Peterborough", 52.5695, -0.2405),
    ("Gloucester", 51.8642, -2.2382),
]

# Bench-only bookkeeping, beside the service's tables: what was seeded, and the request variants
# both load generators draw from.
CREATE_META = """
CREATE TABLE IF NOT EXISTS bench_meta (key text PRIMARY KEY, value text NOT NULL)
"""

INSERT_FORCES = """
INSERT INTO force (code, name) SELECT * FROM unnest($1::text[], $2::text[])
ON CONFLICT (code) DO NOTHING
"""

INSERT_PROVIDERS = """
INSERT INTO provider (id, name)
SELECT gen_random_uuid(), 'Bench provider ' || lpad(g::text, 3, '0')
FROM generate_series(1, $1) g
"""

# A tenth of sites take men only, half women only, the rest mixes; one in five asks the
# provider (booking mode request); a few are paused or closed.
INSERT_SITES = """
WITH town AS (
    SELECT t.name, t.lat, t.lon, t.n - 1 AS n
    FROM unnest($2::text[], $3::float8[], $4::float8[]) WITH ORDINALITY AS t(name, lat, lon, n)
), prov AS (
    SELECT id, row_number() OVER (ORDER BY name) - 1 AS n FROM provider
    WHERE name LIKE 'Bench provider %'
)
INSERT INTO site (
    id, provider_id, name, address, area, lat, lon, genders_accepted, languages,
    interpreter_on_call, booking_mode, max_stay_hours, status, phone
)
SELECT gen_random_uuid(), prov.id,
       'Safe house ' || lpad(g::text, 4, '0'),
       g || ' Bench Street, ' || town.name,
       town.name,
       town.lat + (random() - 0.5) * 0.16,
       town.lon + (random() - 0.5) * 0.24,
       CASE g % 10
           WHEN 0 THEN ARRAY['male']
           WHEN 1 THEN ARRAY['male', 'non_binary']
           WHEN 2 THEN ARRAY['female', 'male', 'non_binary']
           WHEN 3 THEN ARRAY['female', 'non_binary']
           ELSE ARRAY['female']
       END,
       CASE g % 8
           WHEN 0 THEN ARRAY['en', 'ro'] WHEN 1 THEN ARRAY['en', 'pl'] WHEN 2 THEN ARRAY['en', 'vi']
           WHEN 3 THEN ARRAY['en', 'sq'] WHEN 4 THEN ARRAY['en', 'ar'] WHEN 5 THEN ARRAY['en', 'ur']
           WHEN 6 THEN ARRAY['en', 'ti'] ELSE ARRAY['en']
       END,
       g % 3 = 0,
       CASE WHEN g % 5 = 4 THEN 'request' ELSE 'instant' END,
       72,
       CASE WHEN g % 50 = 17 THEN 'paused' WHEN g % 100 = 33 THEN 'closed' ELSE 'active' END,
       '01632 9' || lpad((g % 100000)::text, 5, '0')
FROM generate_series(0, $1 - 1) g
JOIN town ON town.n = g % cardinality($2::text[])
JOIN prov ON prov.n = g % $5
"""

# Per site: six singles, two shared rooms, a family room (up to 3 children) and an accessible
# single; one bed in fifty is out of service.
INSERT_BEDS = """
INSERT INTO bed (id, site_id, label, room_type, wheelchair_accessible, max_dependants, in_service)
SELECT gen_random_uuid(), s.id, 'Room ' || r,
       CASE WHEN r <= 6 OR r = 10 THEN 'single' WHEN r <= 8 THEN 'shared' ELSE 'family' END,
       r = 10,
       CASE WHEN r = 9 THEN 3 ELSE 0 END,
       random() >= 0.02
FROM site s CROSS JOIN generate_series(1, $1) r
"""

# Beds numbered 0..n-1 once, so set-based inserts can address "the g-th bed".
CREATE_BED_NO = """
CREATE TABLE IF NOT EXISTS bench_bed AS
SELECT row_number() OVER (ORDER BY b.id) - 1 AS n, b.id, b.site_id, s.genders_accepted
FROM bed b JOIN site s ON s.id = b.site_id;
CREATE UNIQUE INDEX IF NOT EXISTS bench_bed_n ON bench_bed (n);
"""

# Past stays g in [$1, $2): bed g mod beds, slot g div beds weeks back, 1-3 days long, in a
# terminal state. Each allocation gets its booking (personal fields long erased).
INSERT_PAST = """
WITH spec AS (
    SELECT gen_random_uuid() AS id, bb.site_id, bb.id AS bed_id, bb.genders_accepted, g,
           date_trunc('minute', $4::timestamptz - (g / $3 + 1) * interval '7 days'
                      + random() * interval '3 days') AS start_at,
           interval '24 hours' + random() * interval '48 hours' AS length,
           random() AS r
    FROM generate_series($1, $2 - 1) g
    JOIN bench_bed bb ON bb.n = g % $3
), alloc AS (
    INSERT INTO allocation (
        id, site_id, bed_id, kind, status, period, hold_expires_at, created_at, updated_at,
        ended_at
    )
    SELECT id, site_id, bed_id, 'booking',
           CASE WHEN r < 0.70 THEN 'departed' WHEN r < 0.80 THEN 'cancelled'
                WHEN r < 0.88 THEN 'expired' WHEN r < 0.93 THEN 'declined' ELSE 'no_show' END,
           tstzrange(start_at, date_trunc('minute', start_at + length), '[)'),
           start_at - interval '100 minutes',
           start_at - interval '2 hours', start_at + length,
           start_at + length  -- ended at its last change, as sql/0011 dates older rows
    FROM spec
    RETURNING id, status
)
INSERT INTO booking (
    id, site_id, force_code, gender, dependants, wheelchair, language, custody_suite,
    personal_erased_at, checked_in_at, checked_out_at, created_at
)
SELECT spec.id, spec.site_id, ($5::text[])[1 + spec.g % cardinality($5::text[])],
       spec.genders_accepted[1 + spec.g % cardinality(spec.genders_accepted)],
       0, false, CASE WHEN spec.g % 4 = 0 THEN 'ro' END, $6,
       CASE WHEN spec.start_at + spec.length + interval '90 days' < $4
            THEN spec.start_at + spec.length + interval '90 days' END,
       CASE WHEN alloc.status = 'departed' THEN spec.start_at + interval '1 hour' END,
       CASE WHEN alloc.status = 'departed' THEN spec.start_at + spec.length END,
       spec.start_at - interval '2 hours'
FROM alloc JOIN spec ON spec.id = alloc.id
"""

# About a third of beds are occupied now: confirmed or arrived, from within the last 20 hours
# to 12-72 hours ahead (after the last past stay of that bed ended).
INSERT_CURRENT = """
WITH spec AS (
    SELECT gen_random_uuid() AS id, bb.site_id, bb.id AS bed_id, bb.genders_accepted, bb.n,
           date_trunc('minute', $1::timestamptz - random() * interval '20 hours') AS start_at,
           date_trunc('minute', $1::timestamptz + interval '12 hours'
                      + random() * interval '60 hours') AS end_at,
           CASE WHEN random() < 0.7 THEN 'arrived' ELSE 'confirmed' END AS status
    FROM bench_bed bb
    WHERE bb.n % 3 = 0
), alloc AS (
    INSERT INTO allocation (id, site_id, bed_id, kind, status, period, created_at, updated_at)
    SELECT id, site_id, bed_id, 'booking', status, tstzrange(start_at, end_at, '[)'),
           start_at - interval '2 hours', start_at
    FROM spec
    RETURNING id
)
INSERT INTO booking (
    id, site_id, force_code, gender, dependants, wheelchair, custody_suite, person_ref,
    officer_collar, checked_in_at, created_at
)
SELECT spec.id, spec.site_id, ($2::text[])[1 + spec.n % cardinality($2::text[])],
       spec.genders_accepted[1], 0, false, $3, 'BENCH-' || spec.n, 'PC ' || spec.n,
       CASE WHEN spec.status = 'arrived' THEN spec.start_at END,
       spec.start_at - interval '2 hours'
FROM alloc JOIN spec ON spec.id = alloc.id
"""

COUNT_CURRENT = "SELECT count(*) FROM booking WHERE custody_suite = $1"

DELETE_CURRENT = """
WITH gone AS (DELETE FROM booking WHERE custody_suite = $1 RETURNING id)
DELETE FROM allocation WHERE id IN (SELECT id FROM gone)
"""


@dataclass(frozen=True)
class Size:
    """A data set: how many sites, and how many allocations the ledger holds."""

    name: str
    sites: int
    allocations: int

    @property
    def beds(self) -> int:
        return self.sites * BEDS_PER_SITE

    @property
    def database(self) -> str:
        return f"pos_bench_{self.name}"


def generator_version() -> str:
    """Changes whenever this file does, so an old data set is rebuilt rather than reused."""
    return hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:16]


async def seeded_as(conn: asyncpg.Connection) -> str | None:
    await conn.execute(CREATE_META)
    value: str | None = await conn.fetchval("SELECT value FROM bench_meta WHERE key = 'dataset'")
    return value


def fingerprint(size: Size) -> str:
    return f"{generator_version()}:{size.sites}:{size.allocations}"


async def seed(conn: asyncpg.Connection, size: Size, log: object = print) -> None:
    """Fill an empty, migrated database with `size`; ANALYZE at the end."""
    say = log if callable(log) else print
    now = await conn.fetchval("SELECT now()")
    forces = [code for code, _ in FORCES]
    started = time.monotonic()
    await conn.execute("SELECT setseed(0.42)")
    await conn.execute(INSERT_FORCES, forces, [name for _, name in FORCES])
    await conn.execute(INSERT_PROVIDERS, PROVIDERS)
    await conn.execute(
        INSERT_SITES,
        size.sites,
        [t[0] for t in TOWNS],
        [t[1] for t in TOWNS],
        [t[2] for t in TOWNS],
        PROVIDERS,
    )
    await conn.execute(INSERT_BEDS, BEDS_PER_SITE)
    await conn.execute(CREATE_BED_NO)
    await conn.execute(INSERT_CURRENT, now, forces, CURRENT_SUITE)
    current = await conn.fetchval(COUNT_CURRENT, CURRENT_SUITE)
    past = max(0, size.allocations - current)
    batch = 200_000
    for lo in range(0, past, batch):
        hi = min(past, lo + batch)
        await conn.execute(INSERT_PAST, lo, hi, size.beds, now, forces, PAST_SUITE)
        say(f"  {hi + current:>9,} / {size.allocations:,} allocations")
    say("  vacuum analyze")
    await conn.execute("VACUUM (ANALYZE)")
    await conn.execute(
        "INSERT INTO bench_meta (key, value) VALUES ('dataset', $1), ('seeded_at', $2)"
        " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        fingerprint(size),
        now.isoformat(),
    )
    say(f"  seeded in {time.monotonic() - started:.0f} s")


async def refresh_current(conn: asyncpg.Connection) -> None:
    """Re-centre "occupied now" on this moment, so a data set seeded yesterday is still a third
    full today; the past stays stay where they are."""
    forces = [code for code, _ in FORCES]
    async with conn.transaction():
        await conn.execute(DELETE_CURRENT, CURRENT_SUITE)
        await conn.execute(
            INSERT_CURRENT, await conn.fetchval("SELECT now()"), forces, CURRENT_SUITE
        )
    await conn.execute("ANALYZE allocation")
    await conn.execute("ANALYZE booking")
