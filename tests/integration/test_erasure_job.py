"""Erasure on schedule (issue 10): the purge runs as a job, one replica at a time, counting the
retention period from the end of each stay; history, events and counts stay as they were, and
no personal value remains anywhere."""

from __future__ import annotations

import asyncio
import subprocess
import uuid
from datetime import timedelta
from typing import Any

import asyncpg
import pytest

from service.db import Pool
from service.jobs import erase_once
from service.queries import purge as purge_queries
from service.vocab import PERSONAL_FIELDS
from tests.conftest import AppFactory
from tests.support.clock import ManualClock
from tests.support.postgres import pg_bin
from tests.support.units import units_of
from tests.support.until import until
from tests.support.world import World, unique

RETENTION_DAYS = 90
TTL = timedelta(hours=24)  # IDEMPOTENCY_TTL_HOURS


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
    await erase_once(units_of(db, clock, idempotency_ttl=TTL), RETENTION_DAYS)
    kept = (await world.api.get(f"/v1/bookings/{ended['id']}", key=world.admin)).body
    assert kept["person_ref"] == ended["person_ref"]
    assert kept["feedback"]["what_would_help"] == words

    clock.set(ended_at + timedelta(days=RETENTION_DAYS))
    done = await erase_once(units_of(db, clock, idempotency_ttl=TTL), RETENTION_DAYS)
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
        assert await erase_once(units_of(db, clock, idempotency_ttl=TTL), RETENTION_DAYS) is None
    shown = (await world.api.get(f"/v1/bookings/{booking['id']}", key=world.admin)).body
    assert shown["person_ref"] == booking["person_ref"]

    # Rounds that start together: one erases, the other finds the lock taken or nothing left.
    rounds = await asyncio.gather(
        *(erase_once(units_of(db, clock, idempotency_ttl=TTL), RETENTION_DAYS) for _ in range(4))
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
    await erase_once(units_of(db, clock, idempotency_ttl=TTL), RETENTION_DAYS)
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

    async def erased() -> dict[str, Any] | None:
        shown = (await world.api.get(f"/v1/bookings/{booking['id']}", key=world.admin)).body
        return shown if shown["person_ref"] is None else None

    shown = await until(erased, what="the erasure job to run")
    assert shown["feedback"]["what_would_help"] is None


# --- nothing personal left: not in a dump, not in a dead row version ---------------------------

# The tables a purge changes: erased in place (booking, booking_transition, feedback) or
# deleted (idempotency_key, whose key a client chose).
CHANGED = ("booking", "booking_transition", "feedback", "idempotency_key")


async def _everything_personal(
    world: World, clock: ManualClock
) -> tuple[list[str], str, list[str]]:
    """Stays that ended every way a reason can be written (confirm, check-in, extend, check-out,
    cancel, decline, no-show), with feedback, a client's X-Request-ID and Idempotency-Key that
    carry a name; returns every personal value sent, the last end, and the bookings."""
    site = await world.site()
    for _ in range(3):
        await world.bed(site["id"])
    by_request = await world.site(booking_mode="request")
    await world.bed(by_request["id"])
    start = clock.now()
    sent: list[str] = []

    def said(text: str) -> str:
        sent.append(unique(text))
        return sent[-1]

    async def booked(site_id: str, **headers: str) -> dict[str, Any]:
        body = {
            "person_ref": said("REF"),
            "officer_collar": said("PC"),
            "notes": said("Jane Doe, born 1990"),
        }
        reply = await world.api.post(
            "/v1/bookings",
            {
                "site_id": site_id,
                "start": start.isoformat(),
                "end": (start + timedelta(hours=24)).isoformat(),
                "needs": {"gender": "female"},
                "custody_suite": "Leeds Elland Road",
                **body,
            },
            key=world.officer,
            headers=headers,
        )
        assert reply.status == 201, reply.body
        booking: dict[str, Any] = reply.body
        return booking

    # A client-chosen request id and Idempotency-Key with a name in them.
    stayed = await booked(site["id"], **{"Idempotency-Key": said("Jane-Doe-custody")})
    crafted = said("name:Jane.Doe:dob:1990-01-01")
    await world.act(stayed["id"], "confirm", reason=said("confirmed with Jane's sister"))
    await world.act(stayed["id"], "check-in", key=world.provider, reason=said("Jane arrived"))
    await world.act(
        stayed["id"],
        "extend",
        end=(start + timedelta(hours=30)).isoformat(),
        reason=said("Jane Doe's court date moved"),
    )

    cancelled = await booked(site["id"])
    await world.act(
        cancelled["id"], "cancel", reason_code="other", reason=said("Jane Doe was released")
    )
    declined = await booked(by_request["id"])
    await world.act(declined["id"], "confirm")
    await world.act(
        declined["id"],
        "decline",
        key=world.provider,
        reason_code="other",
        reason=said("no room for Jane Doe's child"),
    )
    absent = await booked(site["id"])
    await world.act(absent["id"], "confirm")
    clock.set(start + timedelta(hours=8))
    await world.act(stayed["id"], "check-out", key=world.provider, reason=said("Jane left with"))
    reply = await world.api.post(
        f"/v1/bookings/{stayed['id']}/feedback",
        {"consent": True, "what_would_help": said("Jane: someone to talk to")},
        key=world.provider,
        headers={"X-Request-ID": crafted},
    )
    assert reply.status == 201, reply.body
    await world.act(
        absent["id"], "no-show", key=world.provider, reason_code="other", reason=said("Jane ill")
    )
    ids = [b["id"] for b in (stayed, cancelled, declined, absent)]
    return sent, crafted, ids


def _dump(dsn: str) -> str:
    """The whole test database as pg_dump writes it (schema and every row)."""
    done = subprocess.run(
        [str(pg_bin("pg_dump")), "--no-owner", "--dbname", dsn],
        check=True,
        capture_output=True,
        timeout=120,
    )
    return done.stdout.decode()


# Every tuple still on a page of the changed tables (their TOAST tables and indexes too), live
# or dead, that holds one of the values: what VACUUM leaves is unused line pointers.
TUPLES_HOLDING = """
WITH heap(oid) AS (
    SELECT c.oid FROM pg_class c WHERE c.oid = ANY($1::regclass[])
    UNION
    SELECT c.reltoastrelid FROM pg_class c WHERE c.oid = ANY($1::regclass[])
), rel(oid) AS (
    SELECT oid FROM heap WHERE oid <> 0
    UNION
    SELECT i.indexrelid FROM pg_index i JOIN heap ON heap.oid = i.indrelid
), page AS (
    SELECT c.oid::regclass::text AS name, c.relkind, blk
    FROM rel JOIN pg_class c ON c.oid = rel.oid
    CROSS JOIN LATERAL generate_series(
        CASE WHEN c.relkind = 'i' THEN 1 ELSE 0 END,
        pg_relation_size(c.oid) / current_setting('block_size')::bigint - 1
    ) AS blk
), tuple AS (
    SELECT p.name, h.t_data AS data
    FROM page p CROSS JOIN LATERAL heap_page_items(get_raw_page(p.name, p.blk)) h
    WHERE p.relkind IN ('r', 't')
    UNION ALL
    SELECT p.name, decode(replace(b.data, ' ', ''), 'hex')
    FROM page p CROSS JOIN LATERAL bt_page_items(get_raw_page(p.name, p.blk)) b
    WHERE p.relkind = 'i'
)
SELECT DISTINCT t.name, v.value
FROM tuple t CROSS JOIN unnest($2::text[]) AS v(value)
WHERE position(convert_to(v.value, 'UTF8') IN t.data) > 0
"""

MANUAL_VACUUMS = """
SELECT relname, vacuum_count FROM pg_stat_user_tables WHERE relname = ANY($1::text[])
"""


async def _vacuums(db: Pool) -> dict[str, int]:
    async with db.acquire() as conn:
        await conn.execute("SELECT pg_stat_clear_snapshot()")
        rows = await conn.fetch(MANUAL_VACUUMS, list(CHANGED))
    return {r["relname"]: r["vacuum_count"] for r in rows}


@pytest.mark.slow
async def test_nothing_personal_is_left_in_a_dump_or_a_dead_row_version(
    world: World, db: Pool, clock: ManualClock, database_dsn: str
) -> None:
    sent, crafted, ids = await _everything_personal(world, clock)
    async with db.acquire() as conn:
        try:
            await conn.execute("CREATE EXTENSION IF NOT EXISTS pageinspect")
            pages = True
        except asyncpg.PostgresError:  # a server without contrib: the statistics must do
            pages = False
    ended = clock.now()
    clock.set(ended + timedelta(days=RETENTION_DAYS, seconds=1))
    vacuumed_before = await _vacuums(db)
    done = await erase_once(units_of(db, clock, idempotency_ttl=TTL), RETENTION_DAYS)
    assert done is not None and done.erased >= len(ids)

    dump = await asyncio.to_thread(_dump, database_dsn)
    assert ids[0] in dump  # the dump is of this database
    assert [value for value in sent if value in dump] == []
    assert crafted not in dump
    # Reason codes stay for the reports; the words beside them went.
    for booking_id in ids:
        shown = (await world.api.get(f"/v1/bookings/{booking_id}", key=world.admin)).body
        assert [step["reason"] for step in shown["history"]] == [None] * len(shown["history"])
    assert shown["history"][-1]["reason_code"] == "other"

    vacuumed = await _vacuums(db)
    assert {t: vacuumed[t] - vacuumed_before.get(t, 0) for t in CHANGED} == dict.fromkeys(
        CHANGED, 1
    )
    if pages:
        async with db.acquire() as conn:
            left = await conn.fetch(TUPLES_HOLDING, list(CHANGED), sent)
        assert [tuple(r) for r in left] == []

    # A round that changes nothing vacuums nothing.
    clock.advance(seconds=1)
    idle = await erase_once(units_of(db, clock, idempotency_ttl=TTL), RETENTION_DAYS)
    assert idle is not None and (idle.erased, idle.forgotten) == (0, 0)
    assert await _vacuums(db) == vacuumed


async def test_a_vacuum_postgresql_skips_is_reported(db: Pool, database_dsn: str) -> None:
    """A role that may not vacuum a table gets a warning, not an error: the round says so
    rather than counting the dead rows as gone."""
    role = f"pos_no_vacuum_{uuid.uuid4().hex[:8]}"
    async with db.acquire() as conn:
        await conn.execute(f"CREATE ROLE {role} LOGIN")  # a fresh name: nothing to quote
        try:
            other = await asyncpg.connect(database_dsn, user=role)
            try:
                refused = await purge_queries.vacuum(other, "feedback", seconds=30)
            finally:
                await other.close()
            assert refused is not None and "feedback" in refused
            assert await purge_queries.vacuum(conn, "feedback", seconds=30) is None
            # Bounded: a VACUUM that cannot start (another holds the table) is given up.
            async with db.acquire() as holder, holder.transaction():
                await holder.execute("LOCK TABLE feedback IN SHARE UPDATE EXCLUSIVE MODE")
                late = await purge_queries.vacuum(conn, "feedback", seconds=0.5)
            assert late == "no end within 0.5 s"
            assert await conn.fetchval("SELECT 1") == 1  # the connection is fit for reuse
        finally:
            await conn.execute(f"DROP ROLE {role}")


async def test_in_development_a_retention_of_zero_days_erases_a_stay_once_it_ends(
    world: World, db: Pool, clock: ManualClock
) -> None:
    """A way to watch erasure without editing the database (issue 17):
    PERSONAL_DATA_RETENTION_DAYS=0, allowed outside production only, erases a stay at the
    first round after it ends, and never one still running."""
    from service.settings import Settings

    assert Settings(personal_data_retention_days=0).personal_data_retention_days == 0
    with pytest.raises(ValueError, match="PERSONAL_DATA_RETENTION_DAYS"):
        Settings(
            environment="production",
            database_url="postgresql://u@/pos?host=/run",
            seed_demo=False,
            personal_data_retention_days=0,
        )
    site = await world.site()
    await world.bed(site["id"])
    await world.bed(site["id"])
    ended, _ = await _stay(world, clock, site["id"])
    live = await world.book(site["id"], clock.now(), officer_collar=unique("PC"))
    await world.act(live["id"], "confirm")
    clock.advance(seconds=1)
    done = await erase_once(units_of(db, clock, idempotency_ttl=TTL), 0)
    assert done is not None and done.erased >= 1
    erased = (await world.api.get(f"/v1/bookings/{ended['id']}", key=world.admin)).body
    assert [erased[name] for name in PERSONAL_FIELDS] == [None, None, None]
    still = (await world.api.get(f"/v1/bookings/{live['id']}", key=world.admin)).body
    assert still["person_ref"] == live["person_ref"]
