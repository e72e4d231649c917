"""A key refused by limits many times in an hour becomes a security alert (issue 14).

Every 429 a key is answered (its request rate, its holds and bookings not yet arrived, how far
ahead it books, its parked long-polls) is counted here, in process, per clock hour; the
refusal that reaches ALERT_REFUSALS_PER_HOUR raises one alert (which further replicas reaching
it in the same hour count up, not repeat). Nothing is written to the database per refusal, so
a key hammering a limit cannot make the service write at its rate.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from uuid import UUID

import structlog
from aiohttp import web

from service import keys
from service.errors import Problem
from service.usecases import alerts, tx
from service.vocab import AlertKind

log = structlog.get_logger(__name__)

# Entries of past hours are dropped once this many keys have been seen.
_PRUNE_FROM = 4096


class RefusalWatch:
    """Each key's refusals in the current clock hour."""

    def __init__(self, per_hour: int) -> None:
        self.per_hour = per_hour
        self._counts: dict[UUID, tuple[int, int]] = {}

    def count(self, key_id: UUID, at: datetime) -> bool:
        """Count one refusal; True exactly when it is the hour's `per_hour`-th for the key."""
        hour = int(at.timestamp() // 3600)
        seen_hour, seen = self._counts.get(key_id, (hour, 0))
        refused = (seen if seen_hour == hour else 0) + 1
        self._counts[key_id] = (hour, refused)
        if len(self._counts) >= _PRUNE_FROM:
            self._counts = {k: v for k, v in self._counts.items() if v[0] == hour}
        return refused == self.per_hour


@web.middleware
async def watch_refusals(
    request: web.Request,
    handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
) -> web.StreamResponse:
    """Counts the 429s of authenticated requests; runs after authentication, outside the
    rate limit (whose refusals count too)."""
    try:
        response = await handler(request)
    except Problem as problem:
        if problem.status == 429:
            await _refused(request, problem.slug)
        raise
    if response.status == 429:
        await _refused(request, "too-many-requests")
    return response


async def _refused(request: web.Request, slug: str) -> None:
    who = request.get(keys.PRINCIPAL)
    if who is None:
        return
    at = request.app[keys.CLOCK].now()
    watch = request.app[keys.REFUSAL_WATCH]
    if not watch.count(who.key_id, at):
        return
    alert = alerts.Alert(
        kind=AlertKind.REPEATED_REFUSALS,
        detail=(
            f"{who.actor} key was refused by limits {watch.per_hour} times within the hour"
            f" (the last: {slug})"
        ),
        api_key_id=who.key_id,
        force_code=who.force_code,
        provider_id=who.provider_id,
    )
    # Its own unit of work: the refused request's has rolled back, or never began.
    async with (
        request.app[keys.POOL].acquire() as conn,
        tx.writing(conn, at=at, who=who, request_id=request.get(keys.REQUEST_ID)) as unit,
    ):
        await alerts.raise_alert(unit, alert)
