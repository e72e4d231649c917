"""`pos purge`: personal fields go once the retention period after a stay has passed, and
stored Idempotency-Key answers once they can no longer be replayed."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from service.queries import idempotency
from service.queries import purge as purge_queries
from service.usecases.tx import Tx
from service.vocab import PERSONAL_FIELDS, TERMINAL_STATUSES, AuditAction, ObjectType


@dataclass(frozen=True)
class Purged:
    erased: int
    forgotten: int


async def purge(tx: Tx, retention_days: int, idempotency_ttl_hours: int) -> Purged:
    """Erase the personal fields of bookings that ended `retention_days` before `tx.at`, one
    audit row each (earlier audit rows stay as they were: they hold no values), and forget
    answers older than the Idempotency-Key window."""
    erased = await purge_queries.erase_personal(
        tx.conn, tx.at, tx.at - timedelta(days=retention_days), TERMINAL_STATUSES
    )
    await tx.audit_many(
        AuditAction.ERASE,
        ObjectType.BOOKING,
        [(booking_id, PERSONAL_FIELDS) for booking_id in erased],
    )
    forgotten = await idempotency.purge(tx.conn, tx.at - timedelta(hours=idempotency_ttl_hours))
    return Purged(erased=len(erased), forgotten=forgotten)
