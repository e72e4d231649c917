"""Background jobs in bounded batches (issue 15 item 1): a backlog of erasure drains in short
transactions that each commit their audit rows, a round stops after its current batch when
asked and the next goes on, and the event feed stays live while it drains; staleness is
announced a batch of sites per transaction."""

from __future__ import annotations

import asyncio
import math
import uuid
from datetime import timedelta
from typing import Any

import pytest

from service import jobs
from service.db import Pool
from service.domain.stays import Policy
from service.jobs import erase_once
from service.usecases import purge
from tests.api.test_events_feed import head
from tests.conftest import AppFactory
from tests.support.backlog import add_backlog, erased_once_each, long_ago, unerased
from tests.support.clock import ManualClock
from tests.support.units import units_of
from tests.support.until import until
from tests.support.world import World

RETENTION_DAYS = 90
TTL = timedelta(hours=24)  # IDEMPOTENCY_TTL_HOURS

# The purge's lock is held: a batch of erasure is running.
PURGE_LOCK_HELD = """
SELECT EXISTS (
    SELECT 1 FROM pg_locks
    WHERE locktype = 'advisory' AND granted
      AND ((classid::bigint << 32) | objid::bigint) = hashtextextended('pos-purge', 0)
)
"""

# The audit rows of a backlog's erasure, by the transaction that wrote them.
ERASE_TRANSACTIONS = """
SELECT count(DISTINCT a.xmin::text)
FROM audit a JOIN booking b ON a.object_id = b.id::text
WHERE a.action = 'erase' AND b.custody_suite = $1
"""


async def _backlog(world: World, db: Pool, clock: ManualClock, count: int) -> tuple[str, str]:
    """A site with a bed, and `count` stays on it long past retention; (site id, backlog)."""
    site = await world.site()
    bed = await world.bed(site["id"])
    await world.bed(site["id"])
    async with db.acquire() as conn:
        suite = await add_backlog(
            conn, uuid.UUID(bed["id"]), world.force, count, long_ago(clock.now(), RETENTION_DAYS)
        )
    return site["id"], suite


async def test_a_backlog_is_erased_in_batches_each_committing_its_audit_rows(
    world: World, db: Pool, clock: ManualClock
) -> None:
    _, suite = await _backlog(world, db, clock, 30)
    done = await erase_once(units_of(db, clock, idempotency_ttl=TTL), RETENTION_DAYS, batch_size=7)
    assert done is not None and done.complete and done.erased >= 30
    async with db.acquire() as conn:
        assert await erased_once_each(conn, suite) == []
        # Five transactions of at most seven bookings, each with its bookings' audit rows.
        assert await conn.fetchval(ERASE_TRANSACTIONS, suite) == math.ceil(30 / 7)


async def test_a_round_asked_to_stop_ends_after_its_batch_and_the_next_goes_on(
    world: World, db: Pool, clock: ManualClock
) -> None:
    _, suite = await _backlog(world, db, clock, 12)
    stop = asyncio.Event()
    batches: list[purge.Batch] = []

    def on_batch(batch: purge.Batch) -> None:
        batches.append(batch)
        stop.set()  # as SIGTERM would, while the first batch commits

    first = await purge.erase(
        units_of(db, clock, idempotency_ttl=TTL),
        RETENTION_DAYS,
        batch_size=5,
        stop=stop,
        on_batch=on_batch,
    )
    assert first is not None and not first.complete
    assert [b.erased for b in batches] == [5] and first.erased == 5
    async with db.acquire() as conn:
        assert await unerased(conn, suite) == 7
    rest = await erase_once(units_of(db, clock, idempotency_ttl=TTL), RETENTION_DAYS, batch_size=5)
    assert rest is not None and rest.complete
    async with db.acquire() as conn:
        assert await erased_once_each(conn, suite) == []


async def _long_poll_for(world: World, after: str, booking_id: str, seconds: float) -> None:
    """Long-poll the feed from `after` until the booking's event is read."""
    cursor = after

    async def read() -> bool:
        nonlocal cursor
        reply = await world.api.get(
            "/v1/events", key=world.admin, params={"after": cursor, "wait": "10"}
        )
        assert reply.status == 200, reply.body
        items: list[dict[str, Any]] = reply.body["items"]
        cursor = reply.body["next_cursor"]
        return any(item["data"].get("booking_id") == booking_id for item in items)

    await until(read, seconds, what="the event to reach the reader", every=0)


# Big enough that the old single-transaction round took many seconds on this machine.
DRAIN = 40_000


@pytest.mark.slow
async def test_an_event_committed_while_a_backlog_drains_reaches_a_long_poll_at_once(
    world: World, db: Pool, clock: ManualClock, make_api: AppFactory
) -> None:
    site_id, suite = await _backlog(world, db, clock, DRAIN)
    cursor = await head(world.api, db)
    # A replica with its jobs on: its first erasure round starts at once.
    await make_api(run_jobs=True)

    async def draining() -> bool:
        async with db.acquire() as conn:
            return bool(await conn.fetchval(PURGE_LOCK_HELD)) or await unerased(conn, suite) < DRAIN

    await until(draining, 30, what="the drain to start", every=0.005)
    hold = await world.book(site_id, clock.now())
    async with db.acquire() as conn:
        left_at_commit = await unerased(conn, suite)
    await _long_poll_for(world, cursor, hold["id"], seconds=60)
    async with db.acquire() as conn:
        left_at_read = await unerased(conn, suite)
    assert left_at_commit > 0, "the drain ended before the event: make the backlog bigger"
    # In order, not in seconds: the reader had the event while the drain still had bookings to
    # erase (a round in one transaction hid every later event until it committed).
    assert left_at_read > 0, "the event reached the reader only once the drain had ended"
    # The drain finishes, every booking erased and audited once.
    await until(lambda: _none_left(db, suite), 120, what="the drain to finish")
    async with db.acquire() as conn:
        assert await erased_once_each(conn, suite) == []


async def _none_left(db: Pool, suite: str) -> bool:
    async with db.acquire() as conn:
        return await unerased(conn, suite) == 0


async def test_staleness_is_announced_in_batches_each_site_once(
    world: World, db: Pool, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    ours = [(await world.site())["id"] for _ in range(5)]
    monkeypatch.setattr(jobs, "STALE_BATCH", 2)
    clock.advance(hours=9)
    announced = await jobs.announce_stale_once(
        units_of(db, clock, Policy(stale_after=timedelta(hours=8)))
    )
    assert announced >= 5
    async with db.acquire() as conn:
        per_site = await conn.fetch(
            "SELECT site_id::text, count(*) FROM event"
            " WHERE type = 'site.capacity_stale' AND site_id = ANY($1::uuid[]) GROUP BY site_id",
            ours,
        )
        biggest = await conn.fetchval(
            "SELECT max(n) FROM (SELECT count(*) AS n FROM event"
            " WHERE type = 'site.capacity_stale' AND occurred_at = $1 GROUP BY xmin::text) t",
            clock.now(),
        )
    assert sorted((r["site_id"], r["count"]) for r in per_site) == sorted((s, 1) for s in ours)
    assert biggest == 2
