"""Erasure on schedule (and `pos purge`): personal fields go once the retention period after
a stay's end has passed, and stored Idempotency-Key answers once they can no longer be
replayed."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from uuid import UUID

from service.queries import idempotency
from service.queries import purge as purge_queries
from service.usecases.tx import Tx
from service.vocab import FEEDBACK_PERSONAL_FIELDS, PERSONAL_FIELDS, AuditAction, ObjectType


@dataclass(frozen=True)
class Purged:
    erased: int
    forgotten: int


async def purge(tx: Tx, retention_days: int, idempotency_ttl_hours: int) -> Purged:
    """Erase the personal fields of bookings whose stay ended `retention_days` before `tx.at`
    (the feedback's free text with them), one audit row each (earlier audit rows stay as they
    were: they hold no values), and forget answers older than the Idempotency-Key window.
    Waits for a purge already running (another replica's job) to finish first."""
    await purge_queries.lock(tx.conn, wait=True)
    return await _purge(tx, retention_days, idempotency_ttl_hours)


async def purge_unless_running(
    tx: Tx, retention_days: int, idempotency_ttl_hours: int
) -> Purged | None:
    """The scheduled purge: as `purge`, or None when another replica's purge holds the lock
    (its work is this round's)."""
    if not await purge_queries.lock(tx.conn, wait=False):
        return None
    return await _purge(tx, retention_days, idempotency_ttl_hours)


async def _purge(tx: Tx, retention_days: int, idempotency_ttl_hours: int) -> Purged:
    erased = await purge_queries.erase_personal(
        tx.conn, tx.at, tx.at - timedelta(days=retention_days)
    )
    feedback_text = await purge_queries.erase_feedback_text(tx.conn)
    fields: dict[UUID, list[str]] = {booking_id: list(PERSONAL_FIELDS) for booking_id in erased}
    for booking_id in feedback_text:
        fields.setdefault(booking_id, []).extend(
            f"feedback.{name}" for name in FEEDBACK_PERSONAL_FIELDS
        )
    await tx.audit_many(AuditAction.ERASE, ObjectType.BOOKING, list(fields.items()))
    forgotten = await idempotency.purge(tx.conn, tx.at - timedelta(hours=idempotency_ttl_hours))
    return Purged(erased=len(erased), forgotten=forgotten)
