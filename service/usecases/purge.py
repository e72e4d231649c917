"""Erasure on schedule (and `pos purge`): personal fields go once the retention period after
a stay's end has passed, and stored Idempotency-Key answers once they can no longer be
replayed; then the tables changed are vacuumed, so no dead row version keeps what went."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from uuid import UUID

from service.db import Connection
from service.queries import idempotency
from service.queries import purge as purge_queries
from service.usecases.tx import Tx
from service.vocab import FEEDBACK_PERSONAL_FIELDS, PERSONAL_FIELDS, AuditAction, ObjectType

# Each table's VACUUM after a round may take this long before it is cancelled (what it did by
# then stays done; autovacuum finishes the rest).
VACUUM_SECONDS = 300.0

# A step's free-text reason, as an erasure's audit row names it.
HISTORY_REASON = "history.reason"


@dataclass(frozen=True)
class Purged:
    erased: int
    forgotten: int
    # The tables whose rows the round changed (so left dead row versions behind).
    changed: tuple[str, ...] = ()


async def purge(tx: Tx, retention_days: int, idempotency_ttl_hours: int) -> Purged:
    """Erase the personal fields of bookings whose stay ended `retention_days` before `tx.at`
    (their steps' free-text reasons and the feedback's free text with them), one audit row
    each (earlier audit rows stay as they were: they hold no values), and forget answers older
    than the Idempotency-Key window. Then `reclaim`, once committed. Waits for a purge
    already running (another replica's job) to finish first."""
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
    fields: dict[UUID, list[str]] = {
        booking_id: [*PERSONAL_FIELDS, *([HISTORY_REASON] if reasons else [])]
        for booking_id, reasons in erased
    }
    for booking_id in feedback_text:
        fields.setdefault(booking_id, []).extend(
            f"feedback.{name}" for name in FEEDBACK_PERSONAL_FIELDS
        )
    await tx.audit_many(AuditAction.ERASE, ObjectType.BOOKING, list(fields.items()))
    forgotten = await idempotency.purge(tx.conn, tx.at - timedelta(hours=idempotency_ttl_hours))
    changed = {
        "booking": bool(erased),
        "booking_transition": any(reasons for _, reasons in erased),
        "feedback": bool(feedback_text),
        "idempotency_key": forgotten > 0,
    }
    return Purged(
        erased=len(erased),
        forgotten=forgotten,
        changed=tuple(table for table, yes in changed.items() if yes),
    )


async def reclaim(conn: Connection, done: Purged) -> dict[str, str]:
    """After a round's transaction has committed, on a connection outside any transaction:
    VACUUM each table the round changed (nothing when it changed nothing), so the values it
    erased or deleted do not stay readable in dead row versions. Each table's VACUUM is bounded
    by VACUUM_SECONDS; returns the tables left unvacuumed, each with why (autovacuum comes by
    later)."""
    left: dict[str, str] = {}
    for table in done.changed:
        why = await purge_queries.vacuum(conn, table, VACUUM_SECONDS)
        if why is not None:
            left[table] = why
    return left
