"""Every web.AppKey and web.RequestKey: the one place application and request state is named."""

from __future__ import annotations

from collections.abc import Awaitable, Mapping
from typing import TYPE_CHECKING, Protocol
from uuid import UUID

from aiohttp import web

from service.clock import Clock
from service.settings import Settings
from service.vocab import Role

if TYPE_CHECKING:
    from service.db import Connection, Pool
    from service.domain.access import Principal
    from service.domain.stays import Policy
    from service.listener import EventListener
    from service.metrics import Metrics
    from service.paging import SealerSource
    from service.ratelimit import LongPolls, RateLimiter
    from service.refusals import RefusalWatch
    from service.stopping import Shutdown
    from service.usecases.alerts import Refusal

SETTINGS: web.AppKey[Settings] = web.AppKey("settings")
CLOCK: web.AppKey[Clock] = web.AppKey("clock")
POOL: web.AppKey[Pool] = web.AppKey("pool")
METRICS: web.AppKey[Metrics] = web.AppKey("metrics")
OPENAPI_TEXT: web.AppKey[str] = web.AppKey("openapi_text")
POLICY: web.AppKey[Policy] = web.AppKey("policy")
RATE_LIMITER: web.AppKey[RateLimiter] = web.AppKey("rate_limiter")
# Each key's 429s this hour, for the repeated-refusals alert.
REFUSAL_WATCH: web.AppKey[RefusalWatch] = web.AppKey("refusal_watch")
LONG_POLLS: web.AppKey[LongPolls] = web.AppKey("long_polls")
# Seals cursors that must show nothing (the feed's), with the database's cursor key.
CURSORS: web.AppKey[SealerSource] = web.AppKey("cursors")
# A pool of one connection for /readyz alone, so it never queues behind request work.
READY_POOL: web.AppKey[Pool] = web.AppKey("ready_pool")
# The DSN the pool was opened with, once resolved: the event listener connects to the same.
DSN: web.AppKey[str] = web.AppKey("dsn")
# (method, route path template) -> the roles that may call the route, None for a public one;
# set by service.routes.add_routes, read by the authenticate and authorize middlewares.
ROUTE_ROLES: web.AppKey[Mapping[tuple[str, str], frozenset[Role] | None]] = web.AppKey(
    "route_roles"
)
# SIGTERM's course: its deadline, what jobs watch between batches, what had to be cut.
SHUTDOWN: web.AppKey[Shutdown] = web.AppKey("shutdown")
# The process's one LISTEN connection: long-polling feed readers wait on it, not on the pool.
EVENT_LISTENER: web.AppKey[EventListener] = web.AppKey("event_listener")


class BookingReplay(Protocol):
    """Answers an Idempotency-Key replay of a booking answer: its first status code and
    headers, the booking as the caller may see it now."""

    def __call__(
        self, request: web.Request, booking_id: UUID, *, status: int, headers: dict[str, str]
    ) -> Awaitable[web.Response]: ...


# Set by app.py to service.handlers.bookings.replay_booking, so the idempotency middleware
# answers a replay without importing the handlers.
BOOKING_REPLAY: web.AppKey[BookingReplay] = web.AppKey("booking_replay")

PRINCIPAL: web.RequestKey[Principal] = web.RequestKey("principal")
# The request id every log line and audit row of the request carries.
REQUEST_ID: web.RequestKey[str] = web.RequestKey("request_id")
# Set by a handler whose request a limit refused and that must be audited and alerted: recorded
# by service.refusals once the request's own unit of work is over.
REFUSAL: web.RequestKey[Refusal] = web.RequestKey("refusal")
# Set while an Idempotency-Key request runs: the handler's writes and the stored answer share
# this connection's transaction.
CONNECTION: web.RequestKey[Connection] = web.RequestKey("connection")
# What an idempotent replay answers, when it must differ from the first answer (a new API
# key's secret is shown once and never stored).
REPLAY_BODY: web.RequestKey[bytes] = web.RequestKey("replay_body")
# Set by booking handlers: a replay re-reads this booking and shows it as the caller may see
# it at replay time, instead of a stored body (an address must not outlive the booking's state).
REPLAY_BOOKING: web.RequestKey[UUID] = web.RequestKey("replay_booking")
