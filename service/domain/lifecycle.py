"""The booking lifecycle (SPEC section 3): which role may take which action from which state,
and what each step emits and does to the site's availability."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from service.errors import Conflict, Forbidden, ValidationProblem
from service.vocab import (
    DEFAULT_REASON_CODES,
    OTHER_REASON,
    REASON_CODES,
    TERMINAL_STATUSES,
    AuditAction,
    AvailabilityCause,
    BookingMode,
    BookingStatus,
    EventType,
    Role,
)

A = AuditAction
S = BookingStatus


@dataclass(frozen=True)
class Action:
    name: AuditAction
    roles: frozenset[Role]
    from_states: frozenset[BookingStatus]
    # The state it leaves the booking in; None when it depends on the site (confirm) or the
    # state does not change (extend).
    to: BookingStatus | None

    @property
    def reason_codes(self) -> type[StrEnum] | None:
        """The reason codes the action takes (SPEC section 3); None for actions without."""
        return REASON_CODES.get(self.name)

    @property
    def default_code(self) -> str | None:
        """The code a step without one is recorded with."""
        return DEFAULT_REASON_CODES.get(self.name)


ACTIONS: dict[str, Action] = {
    a.name: a
    for a in (
        Action(A.CONFIRM, frozenset({Role.OFFICER}), frozenset({S.HELD}), None),
        Action(A.ACCEPT, frozenset({Role.PROVIDER}), frozenset({S.PENDING}), S.CONFIRMED),
        Action(A.DECLINE, frozenset({Role.PROVIDER}), frozenset({S.PENDING}), S.DECLINED),
        Action(
            A.CANCEL,
            frozenset({Role.OFFICER, Role.PROVIDER}),
            frozenset({S.HELD, S.PENDING, S.CONFIRMED}),
            S.CANCELLED,
        ),
        Action(A.CHECK_IN, frozenset({Role.PROVIDER}), frozenset({S.CONFIRMED}), S.ARRIVED),
        Action(A.CHECK_OUT, frozenset({Role.PROVIDER}), frozenset({S.ARRIVED}), S.DEPARTED),
        Action(A.NO_SHOW, frozenset({Role.PROVIDER}), frozenset({S.CONFIRMED}), S.NO_SHOW),
        Action(A.EXTEND, frozenset({Role.OFFICER}), frozenset({S.CONFIRMED, S.ARRIVED}), None),
    )
}

# The event a step emits is named after the state entered, except a hold's and an extension's.
EVENT_TYPES: dict[str, EventType] = {
    A.HOLD: EventType.BOOKING_HELD,
    S.PENDING: EventType.BOOKING_PENDING,
    S.CONFIRMED: EventType.BOOKING_CONFIRMED,
    S.DECLINED: EventType.BOOKING_DECLINED,
    S.CANCELLED: EventType.BOOKING_CANCELLED,
    S.EXPIRED: EventType.BOOKING_EXPIRED,
    S.ARRIVED: EventType.BOOKING_ARRIVED,
    S.DEPARTED: EventType.BOOKING_DEPARTED,
    S.NO_SHOW: EventType.BOOKING_NO_SHOW,
    A.EXTEND: EventType.BOOKING_EXTENDED,
}


def event_type(action: str, status: str) -> EventType:
    """The event an action emits: named after the state entered, or `booking.extended`."""
    if action in (A.HOLD, A.EXTEND):
        return EVENT_TYPES[action]
    return EVENT_TYPES[status]


def availability_cause(
    action: str, status: str, *, period_changed: bool = False
) -> AvailabilityCause | None:
    """How a step changes what a search could return: a hold takes bed time, a step into a
    terminal state gives it back, a wider period (extend, early arrival) takes more. Confirming,
    accepting and an on-time arrival leave the bed's time as it was: None."""
    if action == A.HOLD:
        return AvailabilityCause.BOOKING_HELD
    if period_changed:
        return AvailabilityCause.BOOKING_EXTENDED
    if status in TERMINAL_STATUSES:
        return AvailabilityCause.BOOKING_RELEASED
    return None


def require_allowed(action: Action, role: Role) -> None:
    if role not in action.roles:
        allowed = " or ".join(sorted(action.roles))
        raise Forbidden(f"only the {allowed} role may {action.name} a booking")


def reason_code(action: Action, code: str | None, reason: str | None) -> str | None:
    """The code a step is recorded with: the one given, or the action's default; None for
    actions without codes. A code from another action's list is refused, and `other` needs a
    free-text reason."""
    if action.reason_codes is None:
        if code is not None:
            raise ValidationProblem(
                f"{action.name} takes no reason_code",
                errors=[{"field": "reason_code", "message": "not taken by this action"}],
            )
        return None
    chosen = code or action.default_code
    if chosen not in set(action.reason_codes):
        allowed = ", ".join(action.reason_codes)
        raise ValidationProblem(
            f"reason_code for {action.name} must be one of: {allowed}",
            errors=[{"field": "reason_code", "message": f"must be one of: {allowed}"}],
        )
    if chosen == OTHER_REASON and not reason:
        raise ValidationProblem(
            f"a reason is required to {action.name} a booking with reason_code 'other'",
            errors=[{"field": "reason", "message": "required with reason_code 'other'"}],
        )
    return chosen


def ends_stay(status: str) -> bool:
    """A step into a terminal state ends the stay: retention counts from then."""
    return status in TERMINAL_STATUSES


def require_state(action: Action, status: str) -> None:
    """A transition from the wrong state is a 409 naming the current state."""
    if status not in action.from_states:
        raise Conflict(
            f"cannot {action.name} a booking that is {status}",
            slug="wrong-state",
            extra={"current_status": status},
        )


def target_status(action: Action, current: str, booking_mode: str) -> BookingStatus:
    if action.name == A.CONFIRM:
        return S.CONFIRMED if booking_mode == BookingMode.INSTANT else S.PENDING
    return action.to or BookingStatus(current)


def require_timing(
    action: Action, start: datetime, now: datetime, no_show_grace: timedelta
) -> None:
    """No-show only after start + grace. (An early check-in is allowed: it moves the start,
    if the bed is free from now on; see usecases.bookings.)"""
    if action.name == A.NO_SHOW and now < start + no_show_grace:
        raise Conflict(
            f"a no-show can be recorded from {(start + no_show_grace).isoformat()}",
            slug="too-early",
        )
