"""Migration 0017 (issue 14): bookings erased before it kept their steps' free-text reasons;
it erases them, audited as the purge audits an erasure, and leaves every other step's as it
was.

Today's code cannot drive a database held at migration 16 (every change is recorded through
record_change(), sql/0022), so the test makes the state an earlier purge left on today's schema
and runs 0017's own erasing statement, read from the migration file."""

from __future__ import annotations

import uuid

import asyncpg
import pytest

from service.db import Pool
from service.migrate import load_migrations, migrate
from tests.support.clock import ManualClock
from tests.support.world import World

REASONS_ERASED = 17


@pytest.fixture
async def database_dsn(fresh_database: str) -> str:
    """This test's own database (its audit rows are counted whole), fully migrated."""
    conn = await asyncpg.connect(fresh_database)
    try:
        await migrate(conn)
    finally:
        await conn.close()
    return fresh_database


def erasing_statement() -> str:
    """0017's statement that erases the reasons an earlier purge left (after its ALTERs)."""
    (migration,) = [m for m in load_migrations() if m.version == REASONS_ERASED]
    statement = migration.sql.split("-- Bookings erased before this migration", 1)[1]
    return statement.split("\n", 1)[1]


STEPS = "SELECT reason, reason_code, reason_erased_at FROM booking_transition WHERE booking_id = $1"


async def test_the_reasons_an_earlier_purge_left_are_erased(
    world: World, db: Pool, clock: ManualClock, database_dsn: str
) -> None:
    site = await world.site()
    await world.bed(site["id"])
    await world.bed(site["id"])
    erased = await world.book(site["id"], clock.now())
    await world.act(erased["id"], "cancel", reason_code="other", reason="Jane Doe was released")
    kept = await world.book(site["id"], clock.now())
    await world.act(kept["id"], "cancel", reason_code="other", reason="within retention")
    erased_id, kept_id = uuid.UUID(erased["id"]), uuid.UUID(kept["id"])
    async with db.acquire() as conn:
        # What the purge did before: the booking's fields, not its steps' reasons.
        await conn.execute(
            "UPDATE booking SET person_ref = NULL, officer_collar = NULL, notes = NULL,"
            " personal_erased_at = now() WHERE id = $1",
            erased_id,
        )
        await conn.execute(erasing_statement())
        steps = [tuple(r) for r in await conn.fetch(STEPS, erased_id)]
        untouched = [tuple(r) for r in await conn.fetch(STEPS, kept_id)]
        audit = await conn.fetch(
            "SELECT role, action, fields FROM audit WHERE object_id = $1 AND action = 'erase'",
            erased["id"],
        )
        # An `other` with its reason erased is still a valid step; one with neither is not.
        with pytest.raises(asyncpg.CheckViolationError):
            await conn.execute(
                "UPDATE booking_transition SET reason = NULL WHERE booking_id = $1", kept_id
            )
    assert [(reason, code) for reason, code, _ in steps] == [(None, None), (None, "other")]
    assert steps[-1][2] is not None
    assert untouched[-1] == ("within retention", "other", None)
    assert [tuple(r) for r in audit] == [("system", "erase", ["history.reason"])]
