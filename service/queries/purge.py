"""Erasing personal fields once the retention period after a stay has passed, and vacuuming
the tables that held them."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

import asyncpg

from service.db import Connection

# One batch of erasure at a time, across replicas and `pos purge`: the lock is held to the end
# of the batch's transaction (transaction-scoped: safe behind a transaction-mode pooler, and
# never held between batches). The job tries and, when another has it, leaves the rest of its
# round to them.
LOCK = "SELECT pg_advisory_xact_lock(hashtextextended('pos-purge', 0))"
TRY_LOCK = "SELECT pg_try_advisory_xact_lock(hashtextextended('pos-purge', 0))"

# The next batch of bookings whose stay ended (allocation.ended_at) at or before `$1`, with ids
# above `$2` (a round walks the key range once, through booking_unerased_idx: only bookings not
# yet erased are looked at), locked for this transaction. A booking locked elsewhere (feedback
# being recorded) is skipped: the next round takes it. A statement of its own, so that the
# erasing statement after it starts from a snapshot taken once these locks are held: feedback
# committed before them is seen and erased, feedback after them is refused (the booking is
# erased by then).
CLAIM_BATCH = """
SELECT b.id
FROM booking b
JOIN allocation a ON a.id = b.id
WHERE b.personal_erased_at IS NULL
  AND b.id > $2
  AND a.ended_at <= $1
ORDER BY b.id
LIMIT $3
FOR UPDATE OF b SKIP LOCKED
"""

# Erases a claimed batch in one statement and audits it from the same statement's result: the
# personal fields ($2: when), the free-text reasons of their steps (people write names there),
# the person's own words in feedback; one audit row per booking naming the fields that went
# ($4: the personal fields, $5: a step's reason, $6: feedback's fields), as role `$3`. The
# rows, states, times and reason codes that reports count are kept. Only counts come back.
ERASE_BATCH = """
WITH erased AS (
    UPDATE booking b
    SET person_ref = NULL, officer_collar = NULL, notes = NULL, personal_erased_at = $2
    WHERE b.id = ANY($1::uuid[])
      AND b.personal_erased_at IS NULL
    RETURNING b.id
), reasons AS (
    UPDATE booking_transition t
    SET reason = NULL, reason_erased_at = $2
    FROM erased e
    WHERE t.booking_id = e.id
      AND t.reason IS NOT NULL
    RETURNING t.booking_id
), words AS (
    UPDATE feedback f
    SET what_would_help = NULL
    FROM erased e
    WHERE f.booking_id = e.id
      AND f.what_would_help IS NOT NULL
    RETURNING f.booking_id
), audited AS (
    INSERT INTO audit (at, role, action, object_type, object_id, fields)
    SELECT $2, $3, 'erase', 'booking', e.id::text,
           ARRAY(
               SELECT name FROM unnest(
                   $4::text[]
                   || CASE WHEN r.booking_id IS NULL THEN '{}'::text[] ELSE ARRAY[$5::text] END
                   || CASE WHEN w.booking_id IS NULL THEN '{}'::text[] ELSE $6::text[] END
               ) AS name
               ORDER BY name COLLATE "C"
           )
    FROM erased e
    LEFT JOIN (SELECT DISTINCT booking_id FROM reasons) r ON r.booking_id = e.id
    LEFT JOIN words w ON w.booking_id = e.id
    RETURNING 1
)
SELECT (SELECT count(*) FROM erased) AS erased,
       (SELECT count(*) FROM reasons) AS reasons,
       (SELECT count(*) FROM words) AS words,
       (SELECT count(*) FROM audited) AS audited
"""

# What a round has ahead of it (for `pos purge`'s progress): bookings due and not erased.
DUE = """
SELECT count(*)
FROM booking b
JOIN allocation a ON a.id = b.id
WHERE b.personal_erased_at IS NULL
  AND a.ended_at <= $1
"""


async def lock(conn: Connection, *, wait: bool) -> bool:
    """Takes the purge's lock for the transaction; without `wait`, False if another has it."""
    if wait:
        await conn.execute(LOCK)
        return True
    return bool(await conn.fetchval(TRY_LOCK))


async def claim_batch(
    conn: Connection, ended_before: datetime, after: UUID, limit: int
) -> list[UUID]:
    """Locks the next `limit` bookings due for erasure with ids above `after`; their ids."""
    return [row["id"] for row in await conn.fetch(CLAIM_BATCH, ended_before, after, limit)]


@dataclass(frozen=True)
class Erased:
    bookings: int
    reasons: int
    words: int


async def erase_batch(
    conn: Connection,
    ids: Sequence[UUID],
    at: datetime,
    role: str,
    fields: Sequence[str],
    reason_field: str,
    feedback_fields: Sequence[str],
) -> Erased:
    """Erases the claimed bookings' personal values and audits each; how many of what went."""
    row = await conn.fetchrow(
        ERASE_BATCH, list(ids), at, role, list(fields), reason_field, list(feedback_fields)
    )
    assert row is not None
    assert row["audited"] == row["erased"]
    return Erased(row["erased"], row["reasons"], row["words"])


async def due(conn: Connection, ended_before: datetime) -> int:
    """How many bookings are due for erasure and not erased yet."""
    return int(await conn.fetchval(DUE, ended_before))


# What a round changed, vacuumed once its transaction has committed (VACUUM cannot run in one):
# an UPDATE or DELETE leaves the old row version, erased values and all, on its page until a
# vacuum removes it, and autovacuum comes by only once a table has enough dead rows. Constants:
# a table's name cannot be a parameter.
VACUUM = {
    "booking": "VACUUM booking",
    "booking_transition": "VACUUM booking_transition",
    "feedback": "VACUUM feedback",
    # The key a client chose is in the primary key's index too: clean the indexes every time
    # (the default may skip them when few rows died, leaving the index entries).
    "idempotency_key": "VACUUM (INDEX_CLEANUP ON) idempotency_key",
}


async def vacuum(conn: Connection, table: str, seconds: float) -> str | None:
    """VACUUM one of the tables a purge changes, on a connection outside any transaction;
    None once done, else why not: cancelled after `seconds` (on the server too, keeping the
    pages it has done), or skipped by PostgreSQL with a warning (a role that may not vacuum
    the table)."""
    warnings: list[str] = []

    def listen(_: object, message: asyncpg.PostgresLogMessage) -> None:
        if message.severity_en == "WARNING":
            warnings.append(str(message))

    conn.add_log_listener(listen)
    try:
        async with asyncio.timeout(seconds):
            await conn.execute(VACUUM[table])
    except TimeoutError:
        return f"no end within {seconds:g} s"
    finally:
        # A notice is handed to listeners before the statement's answer (both in arrival
        # order on the event loop), so every warning of this VACUUM is in by now.
        conn.remove_log_listener(listen)
    return "; ".join(warnings) or None
