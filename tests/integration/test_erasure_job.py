"""Erasure on schedule (issue 10): the purge runs as a job, one replica at a time, counting the
retention period from the end of each stay; history, events and counts stay as they were, and
no personal value remains anywhere."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from typing import Any

from service.db import Pool
from service.jobs import erase_once
from service.vocab import PERSONAL_FIELDS
from tests.conftest import AppFactory
from tests.support.clock import ManualClock
from tests.support.world import World, unique

RETENTION_DAYS = 90
TTL_HOURS = 24


async def _stay(world: World, clock: ManualClock, site_id: str) -> tuple[dict[str, Any], str]:
    """A stay with its own personal values, checked out after 8 hours, with feedback."""
    booking = await world.book(
        site_id,
        clock.now(),
        person_ref=unique("REF"),
        officer_collar=unique("PC"),
        notes=unique("needs a ground-floor room"),
    )
    await world.act(booking["id"], "confirm")
    await world.act(booking["id"], "check-in", key=world.provider)
    clock.advance(hours=8)
    await world.act(booking["id"], "check-out", key=world.provider)
    words = unique("someone to talk to at night")
    reply = await world.api.post(
        f"/v1/bookings/{booking['id']}/feedback",
        {"consent": True, "felt_safe": 5, "needs_met": "yes", "what_would_help": words},
        key=world.provider,
    )
    assert reply.status == 201, reply.body
    return booking, words


HISTORY = """
SELECT action, status, at, actor, api_key_id, reason, reason_code FROM booking_transition
WHERE booking_id = $1 ORDER BY id
"""
EVENTS = "SELECT id, type, data, occurred_at FROM event WHERE booking_id = $1 ORDER BY id"

# Every row of the tables that could hold a personal value, as text.
ANYWHERE = """
SELECT 'booking' AS tbl, b::text AS row FROM booking b
UNION ALL SELECT 'audit', a::text FROM audit a
UNION ALL SELECT 'event', e::text FROM event e
UNION ALL SELECT 'search', s::text FROM search s
UNION ALL SELECT 'feedback', f::text FROM feedback f
UNION ALL SELECT 'booking_transition', t::text FROM booking_transition t
"""


async def _kept(db: Pool, booking_id: str) -> tuple[list[Any], list[Any]]:
    async with db.acquire() as conn:
        bid = uuid.UUID(booking_id)
        return (
            [tuple(r) for r in await conn.fetch(HISTORY, bid)],
            [tuple(r) for r in await conn.fetch(EVENTS, bid)],
        )


async def test_the_job_erases_from_the_end_of_the_stay_and_keeps_history_and_events(
    world: World, db: Pool, clock: ManualClock
) -> None:
    site = await world.site()
    await world.bed(site["id"])
    await world.bed(site["id"])
    started = clock.now()
    await world.api.get(
        "/v1/availability",
        key=world.officer,
        params={"end": (started + timedelta(hours=4)).isoformat(), "gender": "female"},
    )
    ended, words = await _stay(world, clock, site["id"])
    ended_at = clock.now()
    live = await world.book(site["id"], clock.now(), officer_collar=unique("PC"))
    await world.act(live["id"], "confirm")
    values = [ended["person_ref"], ended["officer_collar"], ended["notes"], words]
    before = await _kept(db, ended["id"])

    # 90 days after the booking was made, but not yet after its stay ended: kept.
    clock.set(started + timedelta(days=RETENTION_DAYS, hours=1))
    await erase_once(db, clock, RETENTION_DAYS, TTL_HOURS)
    kept = (await world.api.get(f"/v1/bookings/{ended['id']}", key=world.admin)).body
    assert kept["person_ref"] == ended["person_ref"]
    assert kept["feedback"]["what_would_help"] == words

    clock.set(ended_at + timedelta(days=RETENTION_DAYS))
    done = await erase_once(db, clock, RETENTION_DAYS, TTL_HOURS)
    assert done is not None and done.erased >= 1

    erased = (await world.api.get(f"/v1/bookings/{ended['id']}", key=world.admin)).body
    assert [erased[name] for name in PERSONAL_FIELDS] == [None, None, None]
    assert erased["feedback"] == {
        **{k: v for k, v in kept["feedback"].items() if k != "what_would_help"},
        "what_would_help": None,
    }
    assert (erased["status"], erased["start"], erased["end"]) == (
        kept["status"],
        kept["start"],
        kept["end"],
    )
    assert await _kept(db, ended["id"]) == before
    still = (await world.api.get(f"/v1/bookings/{live['id']}", key=world.admin)).body
    assert still["person_ref"] == live["person_ref"]

    async with db.acquire() as conn:
        erasures = await conn.fetch(
            "SELECT role, fields, at FROM audit"
            " WHERE action = 'erase' AND object_type = 'booking' AND object_id = $1",
            ended["id"],
        )
        rows = await conn.fetch(ANYWHERE)
    assert [(r["role"], sorted(r["fields"]), r["at"]) for r in erasures] == [
        ("system", sorted([*PERSONAL_FIELDS, "feedback.what_would_help"]), clock.now())
    ]
    left = [(r["tbl"], value) for r in rows for value in values if value in r["row"]]
    assert left == []


async def test_one_replica_erases_at_a_time(world: World, db: Pool, clock: ManualClock) -> None:
    site = await world.site()
    await world.bed(site["id"])
    booking, _ = await _stay(world, clock, site["id"])
    clock.advance(days=RETENTION_DAYS, hours=1)
    # Another replica's round holds the purge's lock for its transaction.
    async with db.acquire() as other, other.transaction():
        await other.execute("SELECT pg_advisory_xact_lock(hashtextextended('pos-purge', 0))")
        assert await erase_once(db, clock, RETENTION_DAYS, TTL_HOURS) is None
    shown = (await world.api.get(f"/v1/bookings/{booking['id']}", key=world.admin)).body
    assert shown["person_ref"] == booking["person_ref"]

    # Rounds that start together: one erases, the other finds the lock taken or nothing left.
    rounds = await asyncio.gather(
        *(erase_once(db, clock, RETENTION_DAYS, TTL_HOURS) for _ in range(4))
    )
    assert any(r is not None and r.erased >= 1 for r in rounds)
    async with db.acquire() as conn:
        count = await conn.fetchval(
            "SELECT count(*) FROM audit WHERE action = 'erase' AND object_id = $1",
            booking["id"],
        )
    assert count == 1


async def test_no_feedback_once_the_personal_fields_are_erased(
    world: World, db: Pool, clock: ManualClock
) -> None:
    site = await world.site()
    await world.bed(site["id"])
    booking = await world.book(site["id"], clock.now())
    await world.act(booking["id"], "cancel", reason_code="booked_in_error")
    clock.advance(days=RETENTION_DAYS, seconds=1)
    await erase_once(db, clock, RETENTION_DAYS, TTL_HOURS)
    late = await world.api.post(
        f"/v1/bookings/{booking['id']}/feedback",
        {"consent": True, "what_would_help": "x"},
        key=world.provider,
    )
    assert late.status == 409 and late.problem_type == "erased"


async def test_the_service_runs_the_erasure_job(
    make_api: AppFactory, world: World, db: Pool, clock: ManualClock
) -> None:
    site = await world.site()
    await world.bed(site["id"])
    booking, _ = await _stay(world, clock, site["id"])
    clock.advance(days=RETENTION_DAYS, hours=1)
    # A second replica with its jobs on: its first erasure round runs at start.
    await make_api(run_jobs=True)
    deadline = asyncio.get_running_loop().time() + 10
    while True:
        shown = (await world.api.get(f"/v1/bookings/{booking['id']}", key=world.admin)).body
        if shown["person_ref"] is None:
            break
        assert asyncio.get_running_loop().time() < deadline, "the erasure job did not run"
        await asyncio.sleep(0.05)
    assert shown["feedback"]["what_would_help"] is None
