"""The booking lifecycle (SPEC section 3): which role may take which action from which state."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from service.errors import Conflict, Forbidden
from service.vocab import Role

TERMINAL = frozenset({"expired", "cancelled", "declined", "no_show", "departed"})


@dataclass(frozen=True)
class Action:
    name: str
    roles: frozenset[Role]
    from_states: frozenset[str]
    # The state it leaves the booking in; None when it depends on the site (confirm) or the
    # state does not change (extend).
    to: str | None
    reason_required: bool = False


ACTIONS: dict[str, Action] = {
    a.name: a
    for a in (
        Action("confirm", frozenset({"officer"}), frozenset({"held"}), None),
        Action("accept", frozenset({"provider"}), frozenset({"pending"}), "confirmed"),
        Action("decline", frozenset({"provider"}), frozenset({"pending"}), "declined", True),
        Action(
            "cancel",
            frozenset({"officer", "provider"}),
            frozenset({"held", "pending", "confirmed"}),
            "cancelled",
            True,
        ),
        Action("check-in", frozenset({"provider"}), frozenset({"confirmed"}), "arrived"),
        Action("check-out", frozenset({"provider"}), frozenset({"arrived"}), "departed"),
        Action("no-show", frozenset({"provider"}), frozenset({"confirmed"}), "no_show"),
        Action("extend", frozenset({"officer"}), frozenset({"confirmed", "arrived"}), None),
    )
}

EVENT_TYPES = {
    "hold": "booking.held",
    "pending": "booking.pending",
    "confirmed": "booking.confirmed",
    "declined": "booking.declined",
    "cancelled": "booking.cancelled",
    "expired": "booking.expired",
    "arrived": "booking.arrived",
    "departed": "booking.departed",
    "no_show": "booking.no_show",
    "extend": "booking.extended",
}


def event_type(action: str, status: str) -> str:
    """The event an action emits: named after the state entered, or `booking.extended`."""
    if action in ("hold", "extend"):
        return EVENT_TYPES[action]
    return EVENT_TYPES[status]


def require_allowed(action: Action, role: Role) -> None:
    if role not in action.roles:
        allowed = " or ".join(sorted(action.roles))
        raise Forbidden(f"only the {allowed} role may {action.name} a booking")


def require_state(action: Action, status: str) -> None:
    """A transition from the wrong state is a 409 naming the current state."""
    if status not in action.from_states:
        raise Conflict(
            f"cannot {action.name} a booking that is {status}",
            slug="wrong-state",
            extra={"current_status": status},
        )


def target_status(action: Action, current: str, booking_mode: str) -> str:
    if action.name == "confirm":
        return "confirmed" if booking_mode == "instant" else "pending"
    return action.to or current


def require_timing(
    action: Action, start: datetime, now: datetime, no_show_grace: timedelta
) -> None:
    """No-show only after start + grace. (An early check-in is allowed: it moves the start,
    if the bed is free from now on; see domain.bookings.)"""
    if action.name == "no-show" and now < start + no_show_grace:
        raise Conflict(
            f"a no-show can be recorded from {(start + no_show_grace).isoformat()}",
            slug="too-early",
        )
