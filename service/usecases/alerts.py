"""Security alerts for the national coordinators (issue 14): raised where a limit refuses a
key, a key is past its disclosure budget, or an address was shown for a booking cancelled soon
after; listed by admins, and announced as `security.alert` events (admins' feed and webhooks).

An alert names a key, its force and what happened: never a person's data.
"""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

import structlog

from service import paging
from service.domain.access import require_role
from service.ids import new_id
from service.paging import Page, Position
from service.queries import alerts
from service.usecases.changes import Change, record
from service.usecases.results import AlertShown
from service.usecases.tx import ReadTx, Tx
from service.vocab import AlertKind, AuditAction, ObjectType, Role

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Alert:
    """What to raise. Repeats of one kind by one key within the same hour (or, with `once_per`,
    of the same thing) count up on one alert rather than raising another."""

    kind: AlertKind
    detail: str
    api_key_id: UUID | None
    force_code: str | None
    provider_id: UUID | None = None
    site_id: UUID | None = None
    booking_id: UUID | None = None
    once_per: str | None = None


async def raise_alert(tx: Tx, alert: Alert) -> None:
    """Record the alert (or count a repeat of it) in the caller's transaction; a new alert
    is announced as a `security.alert` event."""
    who = alert.api_key_id or alert.force_code
    dedupe = f"{alert.kind}:{alert.once_per or f'{who}:{tx.at:%Y-%m-%dT%H}'}"
    row = await alerts.raise_alert(
        tx.conn,
        alert_id=new_id(),
        kind=alert.kind,
        at=tx.at,
        api_key_id=alert.api_key_id,
        force_code=alert.force_code,
        provider_id=alert.provider_id,
        site_id=alert.site_id,
        booking_id=alert.booking_id,
        detail=alert.detail,
        dedupe=dedupe,
    )
    if row["inserted"]:
        await record(tx, Change.alert(row["id"]))
        log.warning("security alert", kind=str(alert.kind), alert_id=str(row["id"]))


@dataclass(frozen=True)
class Refusal:
    """A request refused by a limit that is audited and alerted each time: which limit, the
    alert's kind, and what the caller was told."""

    cap: str
    kind: AlertKind
    detail: str


async def refused(tx: Tx, refusal: Refusal) -> None:
    """A request the caller's key made was refused by a limit: audited (naming the limit) and
    alerted. Run in a transaction of its own, once the refused one has rolled back and given
    its connection back."""
    who = tx.caller
    # Names the limit that refused it (no field changed).
    await record(
        tx, Change(AuditAction.REFUSE, ObjectType.API_KEY, who.key_id, fields=(refusal.cap,))
    )
    await raise_alert(
        tx,
        Alert(
            kind=refusal.kind,
            detail=f"{who.actor} key refused by the {refusal.cap} limit: {refusal.detail}",
            api_key_id=who.key_id,
            force_code=who.force_code,
            provider_id=who.provider_id,
        ),
    )


@dataclass(frozen=True)
class AlertFilter:
    api_key_id: UUID | None = None
    force: str | None = None
    kind: AlertKind | None = None


async def list_alerts(
    tx: ReadTx, filters: AlertFilter, after: Position | None, limit: int
) -> Page[AlertShown]:
    """Alerts in the order they were first raised; admins only."""
    require_role(tx.caller, Role.ADMIN)
    rows = await alerts.list_page(
        tx.conn,
        api_key_id=filters.api_key_id,
        force_code=filters.force,
        kind=filters.kind,
        after=after,
        limit=limit + 1,
    )
    shown = [AlertShown.model_validate(dict(row)) for row in rows]
    return paging.page(shown, limit, lambda alert: paging.encode(alert.first_at, alert.id))
