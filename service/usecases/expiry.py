"""Writing off holds and pending requests past their deadline."""

from __future__ import annotations

from uuid import UUID

from service.queries import bookings
from service.usecases.tx import Tx
from service.vocab import AuditAction, AvailabilityCause, BookingStatus, EventType, ObjectType

EXPIRY_REASONS = {
    BookingStatus.HELD: "hold not confirmed before it expired",
    BookingStatus.PENDING: "provider did not respond in time",
}


async def expire_lapsed(tx: Tx, *, bed_id: UUID | None = None, limit: int = 500) -> int:
    """Expire what lapsed by `tx.at` (on one bed, or anywhere); returns how many. Callers pass
    a Tx acting for the service ("system"): each is recorded as its doing, dated when it
    lapsed."""
    rows = await bookings.expire_lapsed(tx.conn, tx.at, bed_id=bed_id, limit=limit)
    for row in rows:
        booking_id, lapsed_at = row["id"], row["lapsed_at"]
        await tx.history(
            booking_id,
            AuditAction.EXPIRE,
            BookingStatus.EXPIRED,
            reason=EXPIRY_REASONS[row["was"]],
            at=lapsed_at,
        )
        await tx.event(EventType.BOOKING_EXPIRED, booking_id=booking_id, at=lapsed_at)
        await tx.event(
            EventType.SITE_AVAILABILITY_CHANGED,
            site_id=row["site_id"],
            cause=AvailabilityCause.BOOKING_RELEASED,
            at=lapsed_at,
        )
        await tx.audit(AuditAction.EXPIRE, ObjectType.BOOKING, booking_id, ["status"])
    return len(rows)
