"""Per-key limits in process (per replica, no database): request rates for searches, writes and
feed reads, and the long polls a key may have parked at once."""

from __future__ import annotations

import asyncio
import math
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Literal
from uuid import UUID

import structlog
from aiohttp import web

from service import keys
from service.errors import Problem
from service.settings import Settings

log = structlog.get_logger(__name__)

Budget = Literal["searches", "writes", "feed"]

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
                "feed": settings.rate_limit_feed_reads_per_minute,
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
    if request.path == "/v1/events":
        # A budget of its own, not the searches': a reader catching up after an outage reads
        # full pages back to back and must not spend the searches its officers need, and the
        # search log counts refused searches.
        return "feed"
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


class LongPolls:
    """Long polls each key has parked now, by when each ends at the latest (the event loop's
    clock). In process: they are this process's sockets; with N replicas a key may park up to
    N times the cap (README, "Limits")."""

    def __init__(self, per_key: int) -> None:
        self.per_key = per_key
        self._ends: dict[UUID, list[float]] = {}

    def enter(self, key_id: UUID, ends: float, now: float) -> float:
        """Count one poll in; 0 when admitted (then `leave` it), else the seconds until one of
        the key's polls has ended at the latest."""
        parked = self._ends.setdefault(key_id, [])
        if len(parked) >= self.per_key:
            return min(parked) - now
        parked.append(ends)
        return 0.0

    def leave(self, key_id: UUID, ends: float) -> None:
        parked = self._ends[key_id]
        parked.remove(ends)
        if not parked:
            del self._ends[key_id]


class TooManyLongPolls(Problem):
    status = 429
    slug = "too-many-long-polls"
    title = "Too many long polls"


@contextmanager
def long_poll(request: web.Request, seconds: float) -> Iterator[float]:
    """A place for one long poll of the calling key, for up to `seconds`; yields when it ends
    (the event loop's clock). 429 with Retry-After when the key has LONG_POLLS_PER_KEY parked.

    The one place a long poll is refused: an alert on it belongs here.
    """
    key_id = request[keys.PRINCIPAL].key_id
    polls = request.app[keys.LONG_POLLS]
    now = asyncio.get_running_loop().time()
    ends = now + seconds
    wait = polls.enter(key_id, ends, now)
    if wait > 0:
        request.app[keys.METRICS].limited.labels("long_polls").inc()
        log.info("long poll refused", parked=polls.per_key)
        raise TooManyLongPolls(
            f"this API key already has {polls.per_key} long polls waiting (LONG_POLLS_PER_KEY);"
            " read on with the cursors they answer, or retry after Retry-After seconds",
            headers={"Retry-After": str(max(1, math.ceil(wait)))},
        )
    try:
        yield ends
    finally:
        polls.leave(key_id, ends)
