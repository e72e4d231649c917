"""Background jobs, coordinated through the database so any number of replicas may run them."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from typing import Any, TypeVar

import structlog
from aiohttp import web

from service import keys
from service.stopping import stop_task
from service.usecases import purge
from service.usecases.expiry import expire_lapsed
from service.usecases.purge import Purged
from service.usecases.staleness import announce_stale
from service.usecases.uow import SYSTEM, Units, UseCase

log = structlog.get_logger(__name__)

SWEEP_BATCH = 500
# Sites announced stale per transaction (one statement marks them and writes their events).
STALE_BATCH = 500

T = TypeVar("T")


async def _every(
    app: web.Application, name: str, seconds: float, one_round: Callable[[], Awaitable[None]]
) -> AsyncIterator[None]:
    """The body of a job's cleanup_ctx: `one_round` every `seconds` (a round handles its own
    failures: the job must live on, and watches the shutdown's `requested` between its
    batches), from start until shutdown, then `<name> stopped` (or cut: see stopping.py)."""
    shutdown = app[keys.SHUTDOWN]

    async def loop() -> None:
        while not shutdown.requested.is_set():
            await one_round()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(seconds):
                    await shutdown.requested.wait()

    task = asyncio.create_task(loop(), name=name)
    try:
        yield
    finally:
        await stop_task(task, name, shutdown)


async def sweep_once(units: Units, stop: asyncio.Event | None = None) -> int:
    """Expire every hold and pending request past its deadline; returns how many.

    Rows are claimed with FOR UPDATE SKIP LOCKED, so replicas sweeping at once split the work
    and never expire a booking twice. One transaction per batch: a batch's bookings, their
    history, events and audit rows commit together, and a long sweep holds no lock for long.
    """
    total = 0
    while True:
        done = await units.write(SYSTEM, UseCase(expire_lapsed, limit=SWEEP_BATCH))
        total += done
        if done < SWEEP_BATCH or (stop is not None and stop.is_set()):
            return total
        await asyncio.sleep(0)


async def expiry_job(app: web.Application) -> AsyncIterator[None]:
    """cleanup_ctx: run the sweeper every SWEEP_INTERVAL_SECONDS; stop it cleanly at shutdown."""
    metrics = app[keys.METRICS]

    async def one_round() -> None:
        try:
            expired = await sweep_once(app[keys.UNITS], app[keys.SHUTDOWN].requested)
            metrics.sweeps.labels("ok").inc()
            if expired:
                log.info("expired lapsed bookings", count=expired)
                metrics.bookings.labels("expired").inc(expired)
                metrics.swept.inc(expired)
        except Exception:  # a failed sweep is retried next interval
            metrics.sweeps.labels("failed").inc()
            log.exception("expiry sweep failed")

    async for _ in _every(app, "expiry job", app[keys.SETTINGS].sweep_interval_seconds, one_round):
        yield


async def erase_once(
    units: Units,
    retention_days: int,
    *,
    batch_size: int = purge.BATCH_SIZE,
    stop: asyncio.Event | None = None,
) -> Purged | None:
    """One round of erasure on schedule, acting as "system", in batches (see purge.erase);
    None when another replica's batch holds the lock. Once the round has ended, the tables it
    changed are vacuumed, unless the service is stopping (the VACUUM is then cancelled on the
    server too; autovacuum, or the next round, comes by)."""
    done = await purge.erase(units, retention_days, batch_size=batch_size, stop=stop)
    if done is not None and done.changed:
        async with units.pool.acquire() as conn:
            left = await _unless_stopped(purge.reclaim(conn, done), stop)
        if left is None:
            log.warning("tables not vacuumed after erasure: stopping", tables=done.changed)
        elif left:
            log.warning("tables not vacuumed after erasure", tables=left)
    return done


async def _unless_stopped(work: Coroutine[Any, Any, T], stop: asyncio.Event | None) -> T | None:
    """`work`'s result, or None once `stop` is set first (`work` is then cancelled)."""
    task = asyncio.create_task(work)
    if stop is None:
        return await task
    stopped = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait({task, stopped}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopped.cancel()
    if task.done():
        return task.result()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    return None


async def erasure_job(app: web.Application) -> AsyncIterator[None]:
    """cleanup_ctx: erase personal data past retention every ERASURE_INTERVAL_SECONDS (the
    first round at start), ERASURE_BATCH_SIZE bookings per transaction; a round stopped at
    shutdown goes on at the next start."""
    settings = app[keys.SETTINGS]

    async def one_round() -> None:
        try:
            done = await erase_once(
                app[keys.UNITS],
                settings.personal_data_retention_days,
                batch_size=settings.erasure_batch_size,
                stop=app[keys.SHUTDOWN].requested,
            )
            if done is None:
                log.info("erasure skipped: another replica is erasing")
            elif done.erased or done.forgotten or not done.complete:
                log.info(
                    "erased personal data",
                    bookings=done.erased,
                    answers=done.forgotten,
                    complete=done.complete,
                )
        except Exception:  # a failed round is retried next interval
            log.exception("erasure failed")

    async for _ in _every(app, "erasure job", settings.erasure_interval_seconds, one_round):
        yield


async def announce_stale_once(units: Units, stop: asyncio.Event | None = None) -> int:
    """One round of staleness announcements, acting as "system": each site that has turned
    stale (the policy's `stale_after`) gets its site.capacity_stale once; returns how many. A
    batch of STALE_BATCH sites per transaction; any number of replicas may run it at once
    (each site is marked by one)."""
    total = 0
    while True:
        done = await units.write(SYSTEM, UseCase(announce_stale, STALE_BATCH))
        total += done
        if done < STALE_BATCH or (stop is not None and stop.is_set()):
            return total
        await asyncio.sleep(0)


async def staleness_job(app: web.Application) -> AsyncIterator[None]:
    """cleanup_ctx: announce sites whose capacity turned stale every
    STALENESS_INTERVAL_SECONDS; stop cleanly at shutdown."""
    settings = app[keys.SETTINGS]

    async def one_round() -> None:
        try:
            announced = await announce_stale_once(app[keys.UNITS], app[keys.SHUTDOWN].requested)
            if announced:
                log.info("capacity turned stale", sites=announced)
        except Exception:  # a failed round is retried next interval
            log.exception("staleness round failed")

    async for _ in _every(app, "staleness job", settings.staleness_interval_seconds, one_round):
        yield
