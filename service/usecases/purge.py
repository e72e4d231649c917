"""Erasure on schedule (and `pos purge`): personal fields go once the retention period after
a stay's end has passed, and stored Idempotency-Key answers once they can no longer be
replayed; then the tables changed are vacuumed, so no dead row version keeps what went."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from uuid import UUID

import structlog

from service.clock import Clock
from service.db import Connection, Pool
from service.queries import idempotency
from service.queries import purge as purge_queries
from service.usecases import tx
from service.vocab import FEEDBACK_PERSONAL_FIELDS, PERSONAL_FIELDS

log = structlog.get_logger(__name__)

# Each table's VACUUM after a round may take this long before it is cancelled (what it did by
# then stays done; autovacuum finishes the rest).
VACUUM_SECONDS = 300.0

# A step's free-text reason, as an erasure's audit row names it.
HISTORY_REASON = "history.reason"

# Bookings erased per batch (ERASURE_BATCH_SIZE's default), and stored answers deleted per
# batch. Measured (README, "Operations") on a backlog of 200,000 stays, each with a step's
# reason and a third with feedback, on the 2-core development machine: a batch of 100 took
# 22 ms (median), 500 took 91 ms, 1,000 took 130 ms (at most 290 ms), 5,000 took 450-630 ms.
# 1,000 erases about 7,800 a second (5,000: 11,000) while every transaction stays far under
# the 2 s that would hold the event feed back, even on a machine ten times slower.
BATCH_SIZE = 1000
# Between batches the round gives the event loop (requests, other jobs) and the server a turn.
PAUSE_SECONDS = 0.01

# Ids start above this one: a round walks the whole key range once.
_FIRST = UUID(int=0)


@dataclass(frozen=True)
class Purged:
    erased: int
    forgotten: int
    # The tables whose rows the round changed (so left dead row versions behind).
    changed: tuple[str, ...] = ()
    # False when the round stopped before its end (asked to stop, or another replica's batch
    # took the lock between two of ours): the next round goes on from there.
    complete: bool = True


@dataclass(frozen=True)
class Batch:
    """One committed batch of a round, as progress reports it."""

    erased: int
    erased_so_far: int
    seconds: float


def _stopping(stop: asyncio.Event | None) -> bool:
    return stop is not None and stop.is_set()


async def erase(
    pool: Pool,
    clock: Clock,
    retention_days: int,
    idempotency_ttl_hours: int,
    *,
    on_behalf: str = "system",
    wait: bool = False,
    batch_size: int = BATCH_SIZE,
    stop: asyncio.Event | None = None,
    on_batch: Callable[[Batch], None] | None = None,
) -> Purged | None:
    """One round of erasure: the personal fields of bookings whose stay ended `retention_days`
    before the round began (their steps' free-text reasons and the feedback's free text with
    them), one audit row each (earlier audit rows stay as they were: they hold no values), and
    stored answers older than the Idempotency-Key window. Then `reclaim`.

    In batches of `batch_size`, each its own short transaction that commits its audit rows
    with it, under the purge's transaction-scoped lock: one replica erases at a time, and a
    killed round loses at most its current batch. With `wait` (`pos purge`) each batch waits
    for the lock; without (the job) the round is None when another replica's batch has it,
    and ends early when one takes it between two of ours (that replica goes on). Stops after
    the current batch once `stop` is set.
    """
    started = clock.now()
    ended_before = started - timedelta(days=retention_days)
    after = _FIRST
    erased = 0
    changed: set[str] = set()
    complete = True
    while True:
        if _stopping(stop):
            complete = False
            break
        began = time.monotonic()
        async with (
            pool.acquire() as conn,
            tx.writing(conn, at=clock.now(), who=None, on_behalf=on_behalf) as unit,
        ):
            if not await purge_queries.lock(conn, wait=wait):
                if after == _FIRST and erased == 0:
                    return None
                complete = False
                break
            ids = await purge_queries.claim_batch(conn, ended_before, after, batch_size)
            done = purge_queries.Erased(0, 0, 0)
            if ids:
                done = await purge_queries.erase_batch(
                    conn,
                    ids,
                    unit.at,
                    unit.on_behalf,
                    sorted(PERSONAL_FIELDS),
                    HISTORY_REASON,
                    [f"feedback.{name}" for name in FEEDBACK_PERSONAL_FIELDS],
                )
        erased += done.bookings
        changed.update(
            table
            for table, count in (
                ("booking", done.bookings),
                ("booking_transition", done.reasons),
                ("feedback", done.words),
            )
            if count
        )
        if ids:
            batch = Batch(done.bookings, erased, time.monotonic() - began)
            log.info(
                "erasure batch",
                erased=batch.erased,
                erased_so_far=erased,
                ms=round(batch.seconds * 1000),
            )
            if on_batch is not None:
                on_batch(batch)
        if len(ids) < batch_size:
            break
        after = ids[-1]
        await asyncio.sleep(PAUSE_SECONDS)
    forgotten = await _forget_answers(
        pool, started - timedelta(hours=idempotency_ttl_hours), batch_size, stop
    )
    if forgotten:
        changed.add("idempotency_key")
    return Purged(
        erased=erased,
        forgotten=forgotten,
        changed=tuple(t for t in _TABLES if t in changed),
        complete=complete and not _stopping(stop),
    )


_TABLES = ("booking", "booking_transition", "feedback", "idempotency_key")


async def _forget_answers(
    pool: Pool, older_than: datetime, batch_size: int, stop: asyncio.Event | None
) -> int:
    """Stored Idempotency-Key answers created by `older_than` go, a batch per transaction
    (no lock: batches of replicas at once take different rows)."""
    total = 0
    while not _stopping(stop):
        async with pool.acquire() as conn, conn.transaction():
            done = await idempotency.purge(conn, older_than, batch_size)
        total += done
        if done < batch_size:
            break
        await asyncio.sleep(PAUSE_SECONDS)
    return total


async def due(pool: Pool, clock: Clock, retention_days: int) -> int:
    """How many bookings a round starting now would erase (progress: what is left)."""
    async with pool.acquire() as conn:
        return await purge_queries.due(conn, clock.now() - timedelta(days=retention_days))


async def reclaim(conn: Connection, done: Purged) -> dict[str, str]:
    """After a round's transaction has committed, on a connection outside any transaction:
    VACUUM each table the round changed (nothing when it changed nothing), so the values it
    erased or deleted do not stay readable in dead row versions. Each table's VACUUM is bounded
    by VACUUM_SECONDS; returns the tables left unvacuumed, each with why (autovacuum comes by
    later)."""
    left: dict[str, str] = {}
    for table in done.changed:
        why = await purge_queries.vacuum(conn, table, VACUUM_SECONDS)
        if why is not None:
            left[table] = why
    return left
