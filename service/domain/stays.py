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
# How far ahead a search may ask about (a hold is held to Policy.max_lead, tighter).
BOOKING_HORIZON = timedelta(days=90)
# The longest window a search may ask about: the longest stay any site may offer.
MAX_SEARCH_WINDOW = timedelta(hours=720)
# Rounds of "find free beds, try each": a second round only finds beds freed meanwhile.
HOLD_ROUNDS = 3


@dataclass(frozen=True)
class Policy:
    """Every knob a use case turns to (the settings' values, made once at start, service/app.py
    `policy`; these defaults are the settings' own): how long holds and requests live, how
    many bookings a key or force may have, how far ahead, what an officer is shown and when,
    when a site's capacity is stale, and where webhooks may point."""

    hold_ttl: timedelta = timedelta(minutes=15)
    provider_response: timedelta = timedelta(minutes=30)
    no_show_grace: timedelta = timedelta(hours=2)
    hold_cap_per_key: int = 5
    hold_cap_per_force: int = 20
    booking_cap_per_key: int = 10
    booking_cap_per_force: int = 60
    max_lead: timedelta = timedelta(hours=48)
    address_lead: timedelta = timedelta(hours=4)
    disclosure_budget_per_key: int = 6
    disclosure_budget_per_force: int = 40
    disclosure_without_placement: timedelta = timedelta(hours=2)
    # STALE_AFTER_HOURS: a site unconfirmed that long is shown `stale`.
    stale_after: timedelta = timedelta(hours=8)
    # Webhook targets: https only (production); private addresses allowed (development).
    webhook_require_https: bool = False
    webhook_allow_private: bool = False


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


class BookingCapReached(Problem):
    """429: the key (or its force) already has as many bookings not yet arrived as it may."""

    status = 429
    slug = "too-many-bookings"
    title = "Too many bookings not yet arrived"

    def __init__(self, cap: str, limit: int, retry_after: timedelta) -> None:
        self.cap = cap
        whose = "this API key" if cap == "bookings_per_key" else "your force"
        super().__init__(
            f"{whose} already has {limit} bookings held, pending or confirmed whose person has"
            " not arrived, the most allowed; check people in, or cancel what will not happen",
            headers={"Retry-After": str(max(1, math.ceil(retry_after.total_seconds())))},
        )


class TooFarAhead(Problem):
    """429: a stay may start at most Policy.max_lead from now; it may be held from then on."""

    status = 429
    slug = "too-far-ahead"
    title = "The stay starts too far ahead"

    def __init__(self, max_lead: timedelta, start: datetime, at: datetime) -> None:
        self.cap = "max_lead"
        hours = max_lead.total_seconds() / 3600
        wait = (start - max_lead - at).total_seconds()
        super().__init__(
            f"a stay may start at most {hours:g} hours from now (a Place of Safety is for"
            " now); it can be held from Retry-After seconds on",
            headers={"Retry-After": str(max(1, math.ceil(wait)))},
        )


def check_lead(start: datetime, at: datetime, max_lead: timedelta) -> None:
    if start > at + max_lead:
        raise TooFarAhead(max_lead, start, at)


def no_capacity(detail: str) -> Conflict:
    return Conflict(detail, slug="no-capacity", title="No matching bed is free")


def check_window(
    start: datetime, end: datetime, at: datetime, horizon: timedelta = BOOKING_HORIZON
) -> None:
    """A stay starts now or later (give or take clock skew), within the horizon."""
    if start < at - START_GRACE:
        raise ValidationProblem(
            "start is in the past",
            errors=[{"field": "start", "message": "must not be in the past"}],
        )
    if start > at + horizon:
        hours = horizon.total_seconds() / 3600
        raise ValidationProblem(
            "start is too far ahead",
            errors=[{"field": "start", "message": f"must be within {hours:g} hours from now"}],
        )
    if end <= start:
        raise ValidationProblem(
            "end must be after start", errors=[{"field": "end", "message": "must be after start"}]
        )
    check_end(end, at)


def check_search_window(
    start: datetime, end: datetime, at: datetime, horizon: timedelta = BOOKING_HORIZON
) -> None:
    """A search asks about a stay's window that could be held, no longer than any stay."""
    check_window(start, end, at, horizon)
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
