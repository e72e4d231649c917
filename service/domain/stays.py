"""Rules for a stay's window and for holding beds (SPEC sections 2 and 3): pure, no I/O."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from uuid import UUID

from service.domain.access import Principal, in_scope
from service.errors import Conflict, Problem, ValidationProblem
from service.vocab import AllocationKind, Role

# An officer's "now" may lag ours a little; a start further back than this is refused.
START_GRACE = timedelta(minutes=15)
# How far ahead a stay may be booked.
BOOKING_HORIZON = timedelta(days=90)
# The longest window a search may ask about: the longest stay any site may offer.
MAX_SEARCH_WINDOW = timedelta(hours=720)
# Rounds of "find free beds, try each": a second round only finds beds freed meanwhile.
HOLD_ROUNDS = 3


@dataclass(frozen=True)
class Policy:
    """How long holds and requests live, and how many holds a key or force may have."""

    hold_ttl: timedelta
    provider_response: timedelta
    no_show_grace: timedelta
    hold_cap_per_key: int = 5
    hold_cap_per_force: int = 20


class HoldCapReached(Problem):
    """429: the key (or its force) already has as many live holds as it may."""

    status = 429
    slug = "too-many-holds"
    title = "Too many live holds"

    def __init__(self, cap: str, limit: int, next_lapse: datetime, at: datetime) -> None:
        self.cap = cap
        wait = max(1, math.ceil((next_lapse - at).total_seconds()))
        whose = "this API key" if cap == "holds_per_key" else "your force"
        super().__init__(
            f"{whose} already has {limit} live holds, the most allowed; confirm or cancel one,"
            " or retry after Retry-After seconds, when the first of them lapses",
            headers={"Retry-After": str(wait)},
        )


def no_capacity(detail: str) -> Conflict:
    return Conflict(detail, slug="no-capacity", title="No matching bed is free")


def check_window(start: datetime, end: datetime, at: datetime) -> None:
    """A stay starts now or later (give or take clock skew), within the booking horizon."""
    if start < at - START_GRACE:
        raise ValidationProblem(
            "start is in the past",
            errors=[{"field": "start", "message": "must not be in the past"}],
        )
    if start > at + BOOKING_HORIZON:
        raise ValidationProblem(
            "start is too far ahead",
            errors=[{"field": "start", "message": "must be within 90 days from now"}],
        )
    if end <= start:
        raise ValidationProblem(
            "end must be after start", errors=[{"field": "end", "message": "must be after start"}]
        )
    check_end(end, at)


def check_search_window(start: datetime, end: datetime, at: datetime) -> None:
    """A search asks about a stay's window, and no longer than any stay may be."""
    check_window(start, end, at)
    if end - start > MAX_SEARCH_WINDOW:
        raise ValidationProblem(
            "the window is longer than any stay",
            errors=[{"field": "end", "message": "at most 720 hours after start"}],
        )


def check_end(end: datetime, at: datetime) -> None:
    """A stay that has already ended cannot be searched for, held or extended to."""
    if end <= at:
        raise ValidationProblem(
            "end is in the past", errors=[{"field": "end", "message": "must be in the future"}]
        )


def may_see_claim(who: Principal, kind: str, force_code: str | None, provider_id: UUID) -> bool:
    """Whether a 409 may name the claim in the way: a block is its provider's, a booking its
    force's (and the site's provider's); to anyone else the bed is just not free."""
    if kind == AllocationKind.BOOKING:
        assert force_code is not None
        return in_scope(who, force_code, provider_id)
    return who.role != Role.OFFICER
