"""create_app(settings) -> web.Application: state, middlewares, routes, resources."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from functools import partial

import structlog
from aiohttp import web

from service import keys, stopping
from service.clock import Clock, SystemClock
from service.db import Pool, create_pool, pool_state, resolve_dsn
from service.dispatch import dispatch_job
from service.domain.stays import Policy
from service.jobs import erasure_job, expiry_job, staleness_job
from service.listener import event_listener, release_waiters
from service.metrics import Metrics
from service.middlewares import (
    MAX_BODY_BYTES,
    SERVER_NAME,
    authenticate,
    authorize,
    errors,
    read_body_in_time,
    request_context,
    security_headers,
)
from service.paging import SealerSource
from service.queries import events
from service.ratelimit import LongPolls, RateLimiter, rate_limit
from service.refusals import RefusalWatch, watch_refusals
from service.resources import openapi_path
from service.routes import add_routes
from service.settings import Settings
from service.usecases.uow import Units

log = structlog.get_logger(__name__)


def _database(dsn: str | None) -> Callable[[web.Application], AsyncIterator[None]]:
    async def database(app: web.Application) -> AsyncIterator[None]:
        settings = app[keys.SETTINGS]
        app[keys.DSN] = dsn or await resolve_dsn(settings)
        pool = await create_pool(
            app[keys.DSN],
            min_size=settings.db_pool_min,
            max_size=settings.db_pool_max,
        )
        app[keys.POOL] = pool
        app[keys.UNITS] = Units(
            pool,
            app[keys.CLOCK],
            app[keys.POLICY],
            idempotency_ttl=timedelta(hours=settings.idempotency_ttl_hours),
        )
        app[keys.METRICS].watch_pool(lambda: pool_state(pool))
        app[keys.CURSORS] = SealerSource(partial(_cursor_key, pool))
        shutdown = app[keys.SHUTDOWN]
        try:
            yield
        finally:
            # Every connection comes back once the jobs and requests have ended (or been
            # cut); one that does not by the limit is closed under its user.
            try:
                async with asyncio.timeout(shutdown.left(stopping.EXIT_MARGIN_SECONDS)):
                    await pool.close()
                log.info("database pool closed")
            except TimeoutError:
                shutdown.cut.append("database pool")
                pool.terminate()
                log.warning("database pool terminated: connections still in use at the limit")
            shutdown.finish()

    return database


async def _cursor_key(pool: Pool) -> bytes:
    async with pool.acquire() as conn:
        return await events.cursor_key(conn)


async def _readiness_pool(app: web.Application) -> AsyncIterator[None]:
    """cleanup_ctx (after the database's): one connection of its own for /readyz, so it answers
    while request work has every pooled connection (asyncpg reconnects it when it drops)."""
    pool = await create_pool(app[keys.DSN], min_size=1, max_size=1)
    app[keys.READY_POOL] = pool
    try:
        yield
    finally:
        await pool.close()


async def _response_headers(request: web.Request, response: web.StreamResponse) -> None:
    response.headers["Server"] = SERVER_NAME
    security_headers(request.path, response)


async def _begin_shutdown(app: web.Application) -> None:
    app[keys.SHUTDOWN].begin()


def policy(settings: Settings) -> Policy:
    """Every knob of the rules, from the settings, once (the domain never reads settings):
    each unit of work hands it to its use case as `tx.policy`."""
    return Policy(
        hold_ttl=timedelta(seconds=settings.hold_ttl_seconds),
        provider_response=timedelta(seconds=settings.provider_response_seconds),
        no_show_grace=timedelta(seconds=settings.no_show_grace_seconds),
        hold_cap_per_key=settings.hold_cap_per_key,
        hold_cap_per_force=settings.hold_cap_per_force,
        booking_cap_per_key=settings.booking_cap_per_key,
        booking_cap_per_force=settings.booking_cap_per_force,
        max_lead=timedelta(hours=settings.max_lead_hours),
        address_lead=timedelta(hours=settings.address_lead_hours),
        disclosure_budget_per_key=settings.disclosure_budget_per_key,
        disclosure_budget_per_force=settings.disclosure_budget_per_force,
        disclosure_without_placement=timedelta(
            minutes=settings.disclosure_without_placement_minutes
        ),
        stale_after=timedelta(hours=settings.stale_after_hours),
        webhook_require_https=settings.environment == "production",
        webhook_allow_private=settings.webhook_allow_private,
    )


def create_app(
    settings: Settings,
    *,
    clock: Clock | None = None,
    dsn: str | None = None,
    run_jobs: bool = True,
) -> web.Application:
    """The whole service as an aiohttp application; nothing connects until it starts."""
    app = web.Application(
        # The role check runs as soon as the key is known, before the body is parsed or any
        # limit or Idempotency-Key is looked at. The rate limit runs before the handler looks
        # an Idempotency-Key up (in the use case's unit of work, service/usecases/uow.py), so a
        # refused request stores nothing and a retry with the same key runs again.
        middlewares=[
            request_context,
            errors,
            read_body_in_time,
            authenticate,
            authorize,
            watch_refusals,
            rate_limit,
        ],
        client_max_size=MAX_BODY_BYTES,
    )
    app[keys.SETTINGS] = settings
    app[keys.CLOCK] = clock or SystemClock()
    app[keys.METRICS] = Metrics()
    app[keys.SHUTDOWN] = stopping.Shutdown(settings.shutdown_timeout_seconds)
    app[keys.POLICY] = policy(settings)
    app[keys.RATE_LIMITER] = RateLimiter.from_settings(settings)
    app[keys.REFUSAL_WATCH] = RefusalWatch(settings.alert_refusals_per_hour)
    app[keys.LONG_POLLS] = LongPolls(settings.long_polls_per_key)
    app[keys.OPENAPI_TEXT] = openapi_path().read_text(encoding="utf-8")
    app.on_response_prepare.append(_response_headers)
    app.cleanup_ctx.append(_database(dsn))
    app.cleanup_ctx.append(_readiness_pool)
    # After the database (it connects to the same DSN); long polls are let go at shutdown, so
    # they do not hold the graceful stop for up to their whole wait.
    app.cleanup_ctx.append(event_listener)
    # First on shutdown: the jobs stop after their current batch while requests drain.
    app.on_shutdown.append(_begin_shutdown)
    app.on_shutdown.append(release_waiters)
    if run_jobs:
        app.cleanup_ctx.append(expiry_job)
        app.cleanup_ctx.append(dispatch_job)
        app.cleanup_ctx.append(erasure_job)
        app.cleanup_ctx.append(staleness_job)
    add_routes(app)
    return app
