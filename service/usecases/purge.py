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

from service.db import Connection
from service.queries import idempotency
from service.queries import purge as purge_queries
from service.usecases.tx import ReadTx, Tx
from service.usecases.uow import SYSTEM, Origin, Units, UseCase
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
    units: Units,
    retention_days: int,
    *,
    origin: Origin = SYSTEM,
    wait: bool = False,
    batch_size: int = BATCH_SIZE,
    stop: asyncio.Event | None = None,
    on_batch: Callable[[Batch], None] | None = None,
) -> Purged | None:
    """One round of erasure: the personal fields of bookings whose stay ended `retention_days`
    before the round began (their steps' free-text reasons and the feedback's free text with
    them), one audit row each (earlier audit rows stay as they were: they hold no values), and
    stored answers older than the Idempotency-Key window. Then `reclaim`.

    In batches of `batch_size`, each its own short unit of work (acting for `origin`: the job
    is SYSTEM, `pos purge` CLI) that commits its audit rows with it, under the purge's
    transaction-scoped lock: one replica erases at a time, and a killed round loses at most
    its current batch. With `wait` (`pos purge`) each batch waits for the lock; without (the
    job) the round is None when another replica's batch has it, and ends early when one takes
    it between two of ours (that replica goes on). Stops after the current batch once `stop`
    is set.
    """
    started = units.clock.now()
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
        batch = await units.write(
            origin, UseCase(erase_batch, ended_before, after, batch_size, wait=wait)
        )
        if batch is None:
            if after == _FIRST and erased == 0:
                return None
            complete = False
            break
        ids, done = batch
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
            progress = Batch(done.bookings, erased, time.monotonic() - began)
            log.info(
                "erasure batch",
                erased=progress.erased,
                erased_so_far=erased,
                ms=round(progress.seconds * 1000),
            )
            if on_batch is not None:
                on_batch(progress)
        if len(ids) < batch_size:
            break
        after = ids[-1]
        await asyncio.sleep(PAUSE_SECONDS)
    forgotten = await _forget_answers(
        units, origin, started - units.idempotency_ttl, batch_size, stop
    )
    if forgotten:
        changed.add("idempotency_key")
    return Purged(
        erased=erased,
        forgotten=forgotten,
        changed=tuple(t for t in _TABLES if t in changed),
        complete=complete and not _stopping(stop),
    )


async def erase_batch(
    tx: Tx, ended_before: datetime, after: UUID, limit: int, *, wait: bool
) -> tuple[list[UUID], purge_queries.Erased] | None:
    """One batch of a round: up to `limit` bookings after `after` whose stay ended before
    `ended_before`, erased and audited; the ids claimed and what was erased, or None when
    another replica's batch holds the purge's lock (and `wait` is not asked)."""
    if not await purge_queries.lock(tx.conn, wait=wait):
        return None
    ids = await purge_queries.claim_batch(tx.conn, ended_before, after, limit)
    if not ids:
        return ids, purge_queries.Erased(0, 0, 0)
    done = await purge_queries.erase_batch(
        tx.conn,
        ids,
        tx.at,
        tx.on_behalf,
        sorted(PERSONAL_FIELDS),
        HISTORY_REASON,
        [f"feedback.{name}" for name in FEEDBACK_PERSONAL_FIELDS],
    )
    return ids, done


_TABLES = ("booking", "booking_transition", "feedback", "idempotency_key")


async def _forget_answers(
    units: Units, origin: Origin, older_than: datetime, batch_size: int, stop: asyncio.Event | None
) -> int:
    """Stored Idempotency-Key answers created by `older_than` go, a batch per transaction
    (no lock: batches of replicas at once take different rows)."""
    total = 0
    while not _stopping(stop):
        done = await units.write(origin, UseCase(forget_answers, older_than, batch_size))
        total += done
        if done < batch_size:
            break
        await asyncio.sleep(PAUSE_SECONDS)
    return total


async def forget_answers(tx: Tx, older_than: datetime, limit: int) -> int:
    """Up to `limit` stored Idempotency-Key answers created by `older_than` deleted; how many."""
    return await idempotency.purge(tx.conn, older_than, limit)


async def due(tx: ReadTx, retention_days: int) -> int:
    """How many bookings a round starting now would erase (progress: what is left)."""
    return await purge_queries.due(tx.conn, tx.at - timedelta(days=retention_days))


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
