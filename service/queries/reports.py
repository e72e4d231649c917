"""The summary report's figures: a few aggregate statements over the booking history, the
search log, feedback and the bed ledger. No personal field is read, so erasure changes none.

Every statement takes the window [$1, $2), the grouping $3 (force, provider, area or month:
months in UTC, 'YYYY-MM'), and the optional force ($4) and provider ($5) the figures are
limited to (searches have no provider and beds no force: those take only the other, as $4).
Each answers (key, ...) rows already grouped, a handful per group, never a row per booking;
every key is report_key() of the row (sql/0025_shared_rules.sql), so all group alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

import asyncpg

from service.db import Connection

# Steps of a booking's history in the window, counted by what they were, the state they left
# and their reason code; through booking_transition_at_idx (sql/0014).
STEPS = """
SELECT report_key($3, b.force_code, s.provider_id, s.area, report_month(t.at)) AS key,
       t.action, t.status, t.reason_code, count(*) AS n
FROM booking_transition t
JOIN booking b ON b.id = t.booking_id
JOIN site s ON s.id = b.site_id
WHERE t.at >= $1 AND t.at < $2
  AND ($4::text IS NULL OR b.force_code = $4)
  AND ($5::uuid IS NULL OR s.provider_id = $5)
GROUP BY 1, 2, 3, 4
"""

# Minutes from a booking's hold to its confirmation (the step that made it `confirmed`: an
# instant site's confirm, a request site's accept) and to its arrival, for the confirmations
# and arrivals in the window (grouped by when they happened).
SPANS = """
WITH milestone AS (
    SELECT t.booking_id, 'confirmation' AS span, t.at
    FROM booking_transition t
    WHERE t.at >= $1 AND t.at < $2
      AND t.status = 'confirmed' AND t.action IN ('confirm', 'accept')
    UNION ALL
    SELECT t.booking_id, 'arrival', t.at
    FROM booking_transition t
    WHERE t.at >= $1 AND t.at < $2 AND t.action = 'check-in'
),
timed AS (
    SELECT report_key($3, b.force_code, s.provider_id, s.area, report_month(m.at)) AS key,
           m.span,
           extract(epoch FROM m.at - h.at) / 60 AS minutes
    FROM milestone m
    JOIN booking b ON b.id = m.booking_id
    JOIN site s ON s.id = b.site_id
    JOIN LATERAL (
        SELECT min(h.at) AS at FROM booking_transition h
        WHERE h.booking_id = m.booking_id AND h.action = 'hold'
    ) h ON h.at IS NOT NULL
    WHERE ($4::text IS NULL OR b.force_code = $4)
      AND ($5::uuid IS NULL OR s.provider_id = $5)
)
SELECT key, span, count(*) AS stays,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY minutes) AS median,
       percentile_cont(0.9) WITHIN GROUP (ORDER BY minutes) AS p90
FROM timed
GROUP BY key, span
"""

# Searches in the window by the searching key's force (admins' searches have none) or month,
# and those that found no site by the need that emptied them (NULL: found some); $4 the force
# (searches have no provider). Through search_at_idx.
SEARCHES = """
SELECT report_key($3, force_code, NULL, NULL, report_month(at)) AS key,
       CASE WHEN sites_found = 0 THEN coalesce(empty_cause, 'unknown') END AS cause,
       count(*) AS n
FROM search
WHERE at >= $1 AND at < $2
  AND ($4::text IS NULL OR force_code = $4)
GROUP BY 1, 2
"""

# Security alerts first raised in the window by their key's force or month, and kind ($5: a
# provider's scope, though only admins are shown these). Through security_alert_paging_idx.
ALERTS = """
SELECT report_key($3, force_code, NULL, NULL, report_month(first_at)) AS key,
       kind, count(*) AS n
FROM security_alert
WHERE first_at >= $1 AND first_at < $2
  AND ($4::text IS NULL OR force_code = $4)
  AND ($5::uuid IS NULL OR provider_id = $5)
GROUP BY 1, 2
"""

# Feedback recorded in the window, one row per (question, answer): the coded answers only
# (never what_would_help). `responses` counts every feedback.
FEEDBACK = """
SELECT report_key($3, b.force_code, s.provider_id, s.area, report_month(f.created_at)) AS key,
       q.question, q.answer, count(*) AS n
FROM feedback f
JOIN booking b ON b.id = f.booking_id
JOIN site s ON s.id = b.site_id
CROSS JOIN LATERAL (VALUES
    ('responses', NULL),
    ('consented', CASE WHEN f.consent THEN 'true' END),
    ('felt_safe', f.felt_safe::text),
    ('treated_with_respect', f.treated_with_respect::text),
    ('needs_met', f.needs_met)
) AS q (question, answer)
WHERE f.created_at >= $1 AND f.created_at < $2
  AND ($4::text IS NULL OR b.force_code = $4)
  AND ($5::uuid IS NULL OR s.provider_id = $5)
  AND (q.question = 'responses' OR q.answer IS NOT NULL)
GROUP BY 1, 2, 3
"""

# Bed-nights: `bucket` cuts the window into the calendar months (UTC) it touches when grouping
# by month, else keeps it whole (both statements below start with it).
BUCKETS = """
WITH bucket AS (
    SELECT greatest(m AT TIME ZONE 'UTC', $1::timestamptz) AS b_start,
           least((m + interval '1 month') AT TIME ZONE 'UTC', $2::timestamptz) AS b_end,
           report_month(m AT TIME ZONE 'UTC') AS month
    FROM generate_series(
        date_trunc('month', $1::timestamptz AT TIME ZONE 'UTC'),
        $2::timestamptz AT TIME ZONE 'UTC',
        interval '1 month'
    ) AS m
    WHERE $3::text = 'month' AND m < $2::timestamptz AT TIME ZONE 'UTC'
    UNION ALL
    SELECT $1::timestamptz, $2::timestamptz, NULL WHERE $3::text <> 'month'
)"""

# Bed-nights offered ($4: the provider; beds have no force): each bed in service (as it is
# now: its past in-service changes are not kept) for the part of each bucket it existed in,
# less the time its blocks took, in days.
OFFERED = (
    BUCKETS  # noqa: S608 - two constants joined, no value formatted into SQL
    + """,
bed_span AS (
    SELECT bed.id AS bed_id, s.provider_id, s.area, k.month,
           tstzrange(greatest(bed.created_at, k.b_start),
                     least(coalesce(bed.removed_at, k.b_end), k.b_end), '[)') AS span
    FROM bed
    JOIN site s ON s.id = bed.site_id
    CROSS JOIN bucket k
    WHERE bed.in_service
      AND bed.created_at < k.b_end
      AND (bed.removed_at IS NULL OR bed.removed_at > k.b_start)
      AND ($4::uuid IS NULL OR s.provider_id = $4)
)
SELECT report_key($3, NULL, bs.provider_id, bs.area, bs.month) AS key,
       sum(extract(epoch FROM upper(bs.span) - lower(bs.span)) - coalesce(blk.seconds, 0))
           / 86400 AS offered
FROM bed_span bs
LEFT JOIN LATERAL (
    SELECT sum(extract(epoch FROM upper(a.period * bs.span) - lower(a.period * bs.span)))
               AS seconds
    FROM allocation a
    WHERE a.bed_id = bs.bed_id AND a.status = 'blocked' AND a.period && bs.span
) blk ON true
WHERE NOT isempty(bs.span)
GROUP BY 1
"""
)

# Bed-nights used: the booked time, within each bucket, of stays confirmed, arrived or
# departed (their period as booked), in days; and how many stays make it.
USED = (
    BUCKETS
    + """
SELECT report_key($3, b.force_code, s.provider_id, s.area, k.month) AS key,
       count(DISTINCT a.id) AS stays,
       sum(extract(epoch FROM upper(a.period * tstzrange(k.b_start, k.b_end, '[)'))
                            - lower(a.period * tstzrange(k.b_start, k.b_end, '[)')))) / 86400
           AS used
FROM allocation a
JOIN booking b ON b.id = a.id
JOIN site s ON s.id = b.site_id
JOIN bucket k ON a.period && tstzrange(k.b_start, k.b_end, '[)')
WHERE a.status IN ('confirmed', 'arrived', 'departed')
  AND a.period && tstzrange($1, $2, '[)')
  AND ($4::text IS NULL OR b.force_code = $4)
  AND ($5::uuid IS NULL OR s.provider_id = $5)
GROUP BY 1
"""
)


# Active sites whose capacity has not been confirmed since `$2` (the staleness cut-off), the
# longest stale first, with how many hours they have been unconfirmed at `$1`. A state of now,
# not of the window: what a coordinator chases today.
STALE_SITES = """
SELECT s.id AS site_id, s.name, p.name AS provider, s.area,
       round((extract(epoch FROM $1::timestamptz - s.capacity_confirmed_at) / 3600)::numeric, 1)
           ::float8 AS hours_unconfirmed
FROM site s
JOIN provider p ON p.id = s.provider_id
WHERE s.status = 'active' AND s.capacity_confirmed_at <= $2
  AND ($3::uuid IS NULL OR s.provider_id = $3)
ORDER BY s.capacity_confirmed_at, s.id
LIMIT 1000
"""


@dataclass(frozen=True)
class Scope:
    """The window, the grouping and the limits every statement takes."""

    start: datetime
    end: datetime
    group_by: str
    force: str | None
    provider: UUID | None

    def args(self) -> tuple[datetime, datetime, str, str | None, UUID | None]:
        return (self.start, self.end, self.group_by, self.force, self.provider)


async def steps(conn: Connection, scope: Scope) -> list[asyncpg.Record]:
    return await conn.fetch(STEPS, *scope.args())


async def spans(conn: Connection, scope: Scope) -> list[asyncpg.Record]:
    return await conn.fetch(SPANS, *scope.args())


async def searches(conn: Connection, scope: Scope) -> list[asyncpg.Record]:
    return await conn.fetch(SEARCHES, scope.start, scope.end, scope.group_by, scope.force)


async def alerts(conn: Connection, scope: Scope) -> list[asyncpg.Record]:
    return await conn.fetch(ALERTS, *scope.args())


async def feedback(conn: Connection, scope: Scope) -> list[asyncpg.Record]:
    return await conn.fetch(FEEDBACK, *scope.args())


async def offered(conn: Connection, scope: Scope) -> list[asyncpg.Record]:
    return await conn.fetch(OFFERED, scope.start, scope.end, scope.group_by, scope.provider)


async def used(conn: Connection, scope: Scope) -> list[asyncpg.Record]:
    return await conn.fetch(USED, *scope.args())


async def stale_sites(
    conn: Connection, at: datetime, confirmed_before: datetime, provider: UUID | None
) -> list[asyncpg.Record]:
    return await conn.fetch(STALE_SITES, at, confirmed_before, provider)
