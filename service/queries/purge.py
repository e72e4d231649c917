"""Erasing personal fields once the retention period after a stay has passed, and vacuuming
the tables that held them."""

from __future__ import annotations

import asyncio
from datetime import datetime
from uuid import UUID

import asyncpg

from service.db import Connection

# One purge at a time, across replicas and `pos purge`: the lock is held to the end of the
# purge's transaction. The job tries and, when another has it, leaves this round to them.
LOCK = "SELECT pg_advisory_xact_lock(hashtextextended('pos-purge', 0))"
TRY_LOCK = "SELECT pg_try_advisory_xact_lock(hashtextextended('pos-purge', 0))"

# Personal fields of bookings whose stay ended (allocation.ended_at) at or before `$2`:
# erased, and the free-text reasons of their steps with them (people write names there); the
# rows, states, times and reason codes that reports count are kept. Through
# booking_unerased_idx: only bookings not yet erased are looked at. The ids come back, each
# with whether a step's reason went, so each erasure is audited. One statement: a booking that
# has ended takes no more steps, so its steps are all there to be found.
ERASE_PERSONAL_RETURNING = """
WITH erased AS (
    UPDATE booking b
    SET person_ref = NULL, officer_collar = NULL, notes = NULL, personal_erased_at = $1
    FROM allocation a
    WHERE a.id = b.id
      AND b.personal_erased_at IS NULL
      AND a.ended_at <= $2
    RETURNING b.id
), reasons AS (
    UPDATE booking_transition t
    SET reason = NULL, reason_erased_at = $1
    FROM erased e
    WHERE t.booking_id = e.id
      AND t.reason IS NOT NULL
    RETURNING t.booking_id
)
SELECT e.id, r.booking_id IS NOT NULL AS reasons
FROM erased e
LEFT JOIN (SELECT DISTINCT booking_id FROM reasons) r ON r.booking_id = e.id
"""

# The person's own words in feedback go with the booking's personal fields. A statement of
# its own (a fresh snapshot): it also finds feedback committed while the one above waited for
# a booking's lock; feedback arriving after the booking's erasure is refused.
ERASE_FEEDBACK_TEXT_RETURNING = """
UPDATE feedback f
SET what_would_help = NULL
FROM booking b
WHERE b.id = f.booking_id
  AND f.what_would_help IS NOT NULL
  AND b.personal_erased_at IS NOT NULL
RETURNING f.booking_id
"""


async def lock(conn: Connection, *, wait: bool) -> bool:
    """Takes the purge's lock for the transaction; without `wait`, False if another has it."""
    if wait:
        await conn.execute(LOCK)
        return True
    return bool(await conn.fetchval(TRY_LOCK))


async def erase_personal(
    conn: Connection, at: datetime, ended_before: datetime
) -> list[tuple[UUID, bool]]:
    """Erases the personal fields of bookings that ended by `ended_before`, and their steps'
    reasons; returns their ids, each with whether a step's reason was erased."""
    rows = await conn.fetch(ERASE_PERSONAL_RETURNING, at, ended_before)
    return [(row["id"], row["reasons"]) for row in rows]


async def erase_feedback_text(conn: Connection) -> list[UUID]:
    """Erases feedback text of bookings whose personal fields are erased; returns their ids."""
    rows = await conn.fetch(ERASE_FEEDBACK_TEXT_RETURNING)
    return [row["booking_id"] for row in rows]


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
