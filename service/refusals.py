"""Refusals by limits, recorded for the national coordinators (issue 14).

A hold refused by a cap or the lead time is audited and alerted each time (the handler names
it in `keys.REFUSAL`; the write rate limit bounds how often a key can cause that). Every other
429 a key is answered (its request rate, its parked long-polls) is only counted, in process,
per clock hour: the refusal that reaches ALERT_REFUSALS_PER_HOUR raises one
`repeated_refusals` alert (further replicas reaching it in the same hour count up on it).
With N replicas a key may be refused up to N times the threshold before it is seen.

Both are written here, after the handler, once the refused request's own
unit of work has rolled back and given its connection back (waiting for a second connection
while holding the first would let refusals starve the pool), each in a short transaction of
its own. Recording is best effort: if the database fails here, the 429 still goes out.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from uuid import UUID

import structlog
from aiohttp import web

from service import keys
from service.domain.access import Principal
from service.errors import Problem
from service.usecases import alerts
from service.usecases.tx import Tx
from service.usecases.uow import Origin, UseCase
from service.vocab import AlertKind

log = structlog.get_logger(__name__)

# Entries of past hours are dropped once this many keys have been seen.
_PRUNE_FROM = 4096


class RefusalWatch:
    """Each key's refusals in the current clock hour."""

    def __init__(self, per_hour: int) -> None:
        self.per_hour = per_hour
        self._counts: dict[UUID, tuple[int, int]] = {}
        self._prune_from = _PRUNE_FROM

    def count(self, key_id: UUID, at: datetime) -> bool:
        """Count one refusal; True exactly when it is the hour's `per_hour`-th for the key."""
        hour = int(at.timestamp() // 3600)
        seen_hour, seen = self._counts.get(key_id, (hour, 0))
        refused = (seen if seen_hour == hour else 0) + 1
        self._counts[key_id] = (hour, refused)
        if len(self._counts) >= self._prune_from:
            self._counts = {k: v for k, v in self._counts.items() if v[0] == hour}
            self._prune_from = max(_PRUNE_FROM, 2 * len(self._counts))
        return refused == self.per_hour


@web.middleware
async def watch_refusals(
    request: web.Request,
    handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
) -> web.StreamResponse:
    """Records the 429s of authenticated requests; runs after authentication, outside the
    rate limit (whose refusals count too) and the handler with its unit of work."""
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
    refusal = request.get(keys.REFUSAL)
    if refusal is not None:
        await _record(request, who, UseCase(alerts.refused, refusal=refusal))
    watch = request.app[keys.REFUSAL_WATCH]
    if not watch.count(who.key_id, at):
        return
    last = refusal.cap if refusal is not None else slug
    alert = alerts.Alert(
        kind=AlertKind.REPEATED_REFUSALS,
        detail=(
            f"{who.actor} key was refused by limits {watch.per_hour} times within the hour"
            f" (the last: {last})"
        ),
        api_key_id=who.key_id,
        force_code=who.force_code,
        provider_id=who.provider_id,
    )
    await _record(request, who, UseCase(alerts.raise_alert, alert=alert))


async def _record(request: web.Request, who: Principal, write: UseCase[Tx, None]) -> None:
    """One short unit of work of its own; a failure is logged, and the 429 still answered."""
    try:
        await request.app[keys.UNITS].write(Origin(who, request.get(keys.REQUEST_ID)), write)
    except Exception as exc:  # best effort: the refusal itself must still be answered
        log.warning("refusal not recorded", error=type(exc).__name__)
