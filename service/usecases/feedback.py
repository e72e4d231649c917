"""The person's own voice: the provider records their answers about the stay, with consent."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from uuid import UUID

from service.domain.access import in_scope, require_role
from service.errors import Conflict, NotFound
from service.queries import feedback as feedback_queries
from service.usecases.bookings import show
from service.usecases.changes import Change
from service.usecases.changes import record as record_change
from service.usecases.results import BookingShown
from service.usecases.tx import Tx
from service.vocab import FEEDBACK_STATUSES, AuditAction, ObjectType, Role


@dataclass(frozen=True)
class Answers:
    """What the person chose to answer (consent is the condition of recording any of it)."""

    felt_safe: int | None = None
    treated_with_respect: int | None = None
    needs_met: str | None = None
    language_used: str | None = None
    what_would_help: str | None = None


async def record(tx: Tx, booking_id: UUID, answers: Answers) -> BookingShown:
    """Record the person's feedback on a booking at one of the provider's sites once the
    person has left or was met at a no-show, cancellation or decline; returns the booking
    shown. One per booking; none once its personal fields have been erased. Audited by field
    name (never the answers)."""
    who = tx.caller
    require_role(who, Role.PROVIDER)
    row = await feedback_queries.lock_booking(tx.conn, booking_id, tx.at)
    if row is None or not in_scope(who, row["force_code"], row["provider_id"]):
        raise NotFound("booking not found")
    if row["status"] not in FEEDBACK_STATUSES:
        allowed = ", ".join(sorted(FEEDBACK_STATUSES))
        raise Conflict(
            f"feedback is recorded once a booking is {allowed}; this one is {row['status']}",
            slug="wrong-state",
            extra={"current_status": row["status"]},
        )
    if row["personal_erased_at"] is not None:
        raise Conflict(
            "the booking's personal data has been erased; feedback can no longer be recorded",
            slug="erased",
        )
    recorded = await feedback_queries.insert(
        tx.conn, booking_id, **asdict(answers), at=tx.at, by=who.key_id
    )
    if not recorded:
        raise Conflict("this booking already has feedback", slug="feedback-exists")
    given = {"consent": True, **asdict(answers)}
    await record_change(
        tx,
        Change.of(
            AuditAction.CREATE,
            ObjectType.BOOKING,
            booking_id,
            {f"feedback.{name}": value for name, value in given.items()},
        ),
    )
    return await show(tx, booking_id)
