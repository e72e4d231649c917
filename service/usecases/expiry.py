"""Writing off holds and pending requests past their deadline."""

from __future__ import annotations

from uuid import UUID

from service.queries import bookings
from service.usecases.tx import Tx
from service.vocab import BookingStatus

EXPIRY_REASONS = {
    BookingStatus.HELD: "hold not confirmed before it expired",
    BookingStatus.PENDING: "provider did not respond in time",
}


async def expire_lapsed(tx: Tx, *, bed_id: UUID | None = None, limit: int = 500) -> int:
    """Expire what lapsed by `tx.at` (on one bed, or anywhere); returns how many. Callers pass
    a Tx acting for the service ("system"): each is recorded as its doing, dated when it
    lapsed (its history, its event and its site's, its audit row: one statement for all)."""
    assert tx.who is None, "the service expires bookings, no key"
    return await bookings.expire_lapsed(
        tx.conn,
        tx.at,
        bed_id=bed_id,
        limit=limit,
        on_behalf=tx.on_behalf,
        held_reason=EXPIRY_REASONS[BookingStatus.HELD],
        pending_reason=EXPIRY_REASONS[BookingStatus.PENDING],
        request_id=tx.request_id,
    )
