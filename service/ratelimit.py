"""Per-key request rate limits for searches and writes: in process, per replica, no database."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Literal
from uuid import UUID

import structlog
from aiohttp import web

from service import keys
from service.errors import Problem
from service.settings import Settings

log = structlog.get_logger(__name__)

Budget = Literal["searches", "writes"]

# Budgets are per minute: up to a minute's worth at once, then evenly spaced.
WINDOW_SECONDS = 60.0
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# Stale entries (a key idle for a minute) are dropped once this many keys have been seen.
_PRUNE_FROM = 4096


class RateLimiter:
    """GCRA (a token bucket kept as one number per key): each key's "theoretical arrival time"
    advances by the spacing of its budget on every request it is allowed; a request that
    would push it more than a window ahead of now is refused, and told how long to wait.

    In process on purpose: it costs no round trip and cannot fail with the database. With N
    replicas a key gets up to N times its budget (README, "Limits").
    """

    def __init__(self, per_minute: dict[Budget, int]) -> None:
        self._spacing = {b: WINDOW_SECONDS / n for b, n in per_minute.items() if n > 0}
        self._due: dict[tuple[Budget, UUID], float] = {}
        self._prune_from = _PRUNE_FROM
        # Searches refused per key since its last recorded search (the search log carries it).
        self._refused_searches: Counter[UUID] = Counter()

    @classmethod
    def from_settings(cls, settings: Settings) -> RateLimiter:
        return cls(
            {
                "searches": settings.rate_limit_searches_per_minute,
                "writes": settings.rate_limit_writes_per_minute,
            }
        )

    def take(self, budget: Budget, key_id: UUID, now: float) -> float:
        """Count one request; 0 when it may go ahead, else the seconds until one would."""
        spacing = self._spacing.get(budget)
        if spacing is None:
            return 0.0
        slot = (budget, key_id)
        # Clamped to one window ahead: a wall clock stepped back costs at most one window.
        due = min(max(self._due.get(slot, now), now), now + WINDOW_SECONDS)
        wait = due + spacing - now - WINDOW_SECONDS
        if wait > 0:
            self._due[slot] = due
            if budget == "searches":
                self._refused_searches[key_id] += 1
            return wait
        self._due[slot] = due + spacing
        if len(self._due) >= self._prune_from:
            self._prune(now)
        return 0.0

    def per_minute(self, budget: Budget) -> int:
        spacing = self._spacing.get(budget)
        return 0 if spacing is None else round(WINDOW_SECONDS / spacing)

    def refused_searches(self, key_id: UUID) -> int:
        """How many of this key's searches were refused since the last call for it."""
        return self._refused_searches.pop(key_id, 0)

    def _prune(self, now: float) -> None:
        # An entry due at or before now is the same as no entry at all.
        self._due = {slot: due for slot, due in self._due.items() if due > now}
        self._prune_from = max(_PRUNE_FROM, 2 * len(self._due))


def budget_of(request: web.Request) -> Budget | None:
    if request.method not in _SAFE_METHODS:
        return "writes"
    if request.path == "/v1/availability":
        return "searches"
    return None


class RateLimited(Problem):
    status = 429
    slug = "rate-limited"
    title = "Too many requests"


@web.middleware
async def rate_limit(
    request: web.Request,
    handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
) -> web.StreamResponse:
    """429 with Retry-After once a key has spent its budget; runs after authentication."""
    budget = budget_of(request)
    if budget is None or keys.PRINCIPAL not in request:
        return await handler(request)
    key_id = request[keys.PRINCIPAL].key_id
    now = request.app[keys.CLOCK].now().timestamp()
    wait = request.app[keys.RATE_LIMITER].take(budget, key_id, now)
    if wait > 0:
        request.app[keys.METRICS].limited.labels(budget).inc()
        log.info("rate limited", budget=budget)
        per_minute = request.app[keys.RATE_LIMITER].per_minute(budget)
        raise RateLimited(
            f"this API key has used its {budget} budget ({per_minute} a minute);"
            " retry after Retry-After seconds",
            headers={"Retry-After": str(max(1, math.ceil(wait)))},
        )
    return await handler(request)
