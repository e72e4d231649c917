"""Background jobs, coordinated through the database so any number of replicas may run them."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta

import structlog
from aiohttp import web

from service import keys
from service.clock import Clock
from service.db import Pool
from service.usecases import tx
from service.usecases.expiry import expire_lapsed
from service.usecases.purge import Purged, purge_unless_running, reclaim
from service.usecases.staleness import announce_stale

log = structlog.get_logger(__name__)

SWEEP_BATCH = 500


async def _every(
    name: str, seconds: float, one_round: Callable[[], Awaitable[None]]
) -> AsyncIterator[None]:
    """The body of a job's cleanup_ctx: `one_round` every `seconds` (a round handles its own
    failures: the job must live on), from start until shutdown, then `<name> stopped`."""

    async def loop() -> None:
        while True:
            await one_round()
            await asyncio.sleep(seconds)

    task = asyncio.create_task(loop(), name=name)
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        log.info(f"{name} stopped")


async def sweep_once(pool: Pool, clock: Clock) -> int:
    """Expire every hold and pending request past its deadline; returns how many.

    Rows are claimed with FOR UPDATE SKIP LOCKED, so replicas sweeping at once split the work
    and never expire a booking twice. One transaction per batch: a batch's bookings, their
    history, events and audit rows commit together, and a long sweep holds no lock for long.
    """
    total = 0
    while True:
        async with (
            pool.acquire() as conn,
            tx.writing(conn, at=clock.now(), who=None, on_behalf="system") as unit,
        ):
            done = await expire_lapsed(unit, limit=SWEEP_BATCH)
        total += done
        if done < SWEEP_BATCH:
            return total


async def expiry_job(app: web.Application) -> AsyncIterator[None]:
    """cleanup_ctx: run the sweeper every SWEEP_INTERVAL_SECONDS; stop it cleanly at shutdown."""
    metrics = app[keys.METRICS]

    async def one_round() -> None:
        try:
            expired = await sweep_once(app[keys.POOL], app[keys.CLOCK])
            metrics.sweeps.labels("ok").inc()
            if expired:
                log.info("expired lapsed bookings", count=expired)
                metrics.bookings.labels("expired").inc(expired)
                metrics.swept.inc(expired)
        except Exception:  # a failed sweep is retried next interval
            metrics.sweeps.labels("failed").inc()
            log.exception("expiry sweep failed")

    async for _ in _every("expiry job", app[keys.SETTINGS].sweep_interval_seconds, one_round):
        yield


async def erase_once(
    pool: Pool, clock: Clock, retention_days: int, ttl_hours: int
) -> Purged | None:
    """One round of erasure on schedule, acting as "system"; None when another replica's round
    is running (the purge's advisory lock, held to the end of its transaction, decides). Once
    the round has committed, the tables it changed are vacuumed."""
    async with pool.acquire() as conn:
        async with tx.writing(conn, at=clock.now(), who=None, on_behalf="system") as unit:
            done = await purge_unless_running(unit, retention_days, ttl_hours)
        if done is not None:
            left = await reclaim(conn, done)
            if left:
                log.warning("tables not vacuumed after erasure", tables=left)
        return done


async def erasure_job(app: web.Application) -> AsyncIterator[None]:
    """cleanup_ctx: erase personal data past retention every ERASURE_INTERVAL_SECONDS (the
    first round at start); stop cleanly at shutdown."""
    settings = app[keys.SETTINGS]

    async def one_round() -> None:
        try:
            done = await erase_once(
                app[keys.POOL],
                app[keys.CLOCK],
                settings.personal_data_retention_days,
                settings.idempotency_ttl_hours,
            )
            if done is None:
                log.info("erasure skipped: another replica is erasing")
            elif done.erased or done.forgotten:
                log.info("erased personal data", bookings=done.erased, answers=done.forgotten)
        except Exception:  # a failed round is retried next interval
            log.exception("erasure failed")

    async for _ in _every("erasure job", settings.erasure_interval_seconds, one_round):
        yield


async def announce_stale_once(pool: Pool, clock: Clock, stale_after: timedelta) -> int:
    """One round of staleness announcements, acting as "system": each site that has turned
    stale gets its site.capacity_stale once; returns how many. Any number of replicas may run
    it at once (the marking UPDATE hands each site to one of them)."""
    async with (
        pool.acquire() as conn,
        tx.writing(conn, at=clock.now(), who=None, on_behalf="system") as unit,
    ):
        return await announce_stale(unit, stale_after)


async def staleness_job(app: web.Application) -> AsyncIterator[None]:
    """cleanup_ctx: announce sites whose capacity turned stale every
    STALENESS_INTERVAL_SECONDS; stop cleanly at shutdown."""
    settings = app[keys.SETTINGS]
    stale_after = timedelta(hours=settings.stale_after_hours)

    async def one_round() -> None:
        try:
            announced = await announce_stale_once(app[keys.POOL], app[keys.CLOCK], stale_after)
            if announced:
                log.info("capacity turned stale", sites=announced)
        except Exception:  # a failed round is retried next interval
            log.exception("staleness round failed")

    async for _ in _every("staleness job", settings.staleness_interval_seconds, one_round):
        yield
