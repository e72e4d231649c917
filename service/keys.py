"""Every web.AppKey and web.RequestKey: the one place application and request state is named."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from aiohttp import web

from service.clock import Clock
from service.settings import Settings
from service.vocab import Role

if TYPE_CHECKING:
    from service.db import Pool
    from service.domain.access import Principal
    from service.domain.stays import Policy
    from service.listener import EventListener
    from service.metrics import Metrics
    from service.paging import SealerSource
    from service.ratelimit import LongPolls, RateLimiter
    from service.refusals import RefusalWatch
    from service.stopping import Shutdown
    from service.usecases.alerts import Refusal
    from service.usecases.uow import Units

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
# Runs every use case in its unit of work (service/usecases/uow.py); made with the pool.
UNITS: web.AppKey[Units] = web.AppKey("units")


PRINCIPAL: web.RequestKey[Principal] = web.RequestKey("principal")
# The request id every log line and audit row of the request carries.
REQUEST_ID: web.RequestKey[str] = web.RequestKey("request_id")
# Set by a handler whose request a limit refused and that must be audited and alerted: recorded
# by service.refusals once the request's own unit of work is over.
REFUSAL: web.RequestKey[Refusal] = web.RequestKey("refusal")
