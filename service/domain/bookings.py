"""Holding a bed and moving a booking through its lifecycle; each call runs inside the caller's
transaction, so a booking, its history and its events commit together or not at all."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from uuid import UUID, uuid4

import asyncpg

from service.db import Connection
from service.domain import claims, lifecycle
from service.domain.access import Principal
from service.domain.beds import Bed, Needs, best_fit
from service.errors import Conflict, NotFound, Problem, Unprocessable, ValidationProblem
from service.queries import allocations, beds, bookings
from service.queries.bookings import Transition
from service.settings import Settings

# An officer's "now" may lag ours a little; a start further back than this is refused.
START_GRACE = timedelta(minutes=15)
# How far ahead a stay may be booked.
BOOKING_HORIZON = timedelta(days=90)
# Rounds of "find free beds, try each": a second round only finds beds freed meanwhile.
HOLD_ROUNDS = 3
# Officers see a site's address and phone only while their booking is confirmed or arrived.
ADDRESS_VISIBLE = frozenset({"confirmed", "arrived"})

EXPIRY_REASONS = {
    "held": "hold not confirmed before it expired",
    "pending": "provider did not respond in time",
}


@dataclass(frozen=True)
class Policy:
    hold_ttl: timedelta
    provider_response: timedelta
    no_show_grace: timedelta
    hold_cap_per_key: int = 5
    hold_cap_per_force: int = 20

    @classmethod
    def from_settings(cls, settings: Settings) -> Policy:
        return cls(
            hold_ttl=timedelta(seconds=settings.hold_ttl_seconds),
            provider_response=timedelta(seconds=settings.provider_response_seconds),
            no_show_grace=timedelta(seconds=settings.no_show_grace_seconds),
            hold_cap_per_key=settings.hold_cap_per_key,
            hold_cap_per_force=settings.hold_cap_per_force,
        )


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


@dataclass(frozen=True)
class HoldRequest:
    site_id: UUID
    start: datetime
    end: datetime
    needs: Needs
    person_ref: str
    custody_suite: str
    officer_collar: str
    notes: str | None


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


def check_end(end: datetime, at: datetime) -> None:
    """A stay that has already ended cannot be searched for, held or extended to."""
    if end <= at:
        raise ValidationProblem(
            "end is in the past", errors=[{"field": "end", "message": "must be in the future"}]
        )


def can_see_address(who: Principal, status: str) -> bool:
    return who.role != "officer" or status in ADDRESS_VISIBLE


def in_scope(who: Principal, force_code: str, provider_id: UUID) -> bool:
    """Officers see their force's bookings, providers those at their sites, admins all."""
    if who.role == "officer":
        return who.force_code == force_code
    if who.role == "provider":
        return who.provider_id == provider_id
    return True


async def expire_lapsed(
    conn: Connection,
    at: datetime,
    *,
    bed_id: UUID | None = None,
    limit: int = 500,
) -> int:
    """Write off holds and pending requests past their deadline (on one bed, or anywhere);
    returns how many."""
    rows = await bookings.expire_lapsed(conn, at, bed_id=bed_id, limit=limit)
    await bookings.record(
        conn,
        [
            Transition(
                booking_id=row["id"],
                action="expire",
                status="expired",
                at=row["lapsed_at"],
                actor="system",
                api_key_id=None,
                reason=EXPIRY_REASONS[row["was"]],
                event="booking.expired",
            )
            for row in rows
        ],
    )
    return len(rows)


async def lock_bed_for_claim(conn: Connection, bed_id: UUID, at: datetime) -> bool:
    """Take the bed's claim lock, then write off its lapsed holds and requests (they still count
    for the exclusion constraint until written off). Returns whether the bed is bookable.

    Every write that claims time on a bed (hold, block, extend) starts here, so claims on one
    bed queue behind each other instead of deadlocking inside the exclusion constraint.
    """
    bookable = await beds.lock_for_claim(conn, bed_id)
    await expire_lapsed(conn, at, bed_id=bed_id)
    return bool(bookable)


async def hold(
    conn: Connection, who: Principal, request: HoldRequest, at: datetime, policy: Policy
) -> UUID:
    """Hold the best-fitting free bed at the site for the window.

    The exclusion constraint is the arbiter between racing requests: when another request
    takes the chosen bed first, the insert fails (inside a savepoint) and the next-best free
    bed is tried. No bed left is 409 no-capacity.
    """
    assert who.force_code is not None
    site = await bookings.site_for_booking(conn, request.site_id)
    if site is None:
        raise NotFound("site not found")
    if site["status"] != "active":
        raise no_capacity(f"the site is {site['status']} and takes no bookings")
    if request.needs.gender not in site["genders_accepted"]:
        raise no_capacity(f"the site does not accept gender {request.needs.gender!r}")
    if request.end - request.start > timedelta(hours=site["max_stay_hours"]):
        raise Unprocessable(
            f"the site's longest stay is {site['max_stay_hours']} hours",
            slug="stay-too-long",
        )
    await _check_hold_caps(conn, who, at, policy)
    booking_id = uuid4()
    tried: set[UUID] = set()
    for _ in range(HOLD_ROUNDS):
        free = await bookings.free_beds(
            conn,
            request.site_id,
            request.start,
            request.end,
            request.needs.dependants,
            request.needs.wheelchair,
            at,
        )
        candidates = [
            b for b in best_fit((Bed(**dict(r)) for r in free), request.needs) if b.id not in tried
        ]
        if not candidates:
            break
        for bed in candidates:
            tried.add(bed.id)
            if await _claim(conn, booking_id, request, bed.id, at, policy):
                await _insert_booking(conn, who, booking_id, request)
                await bookings.record(
                    conn,
                    [
                        Transition(
                            booking_id=booking_id,
                            action="hold",
                            status="held",
                            at=at,
                            actor=who.actor,
                            api_key_id=who.key_id,
                            reason=None,
                            event=lifecycle.event_type("hold", "held"),
                        )
                    ],
                )
                return booking_id
    raise no_capacity("no bed at this site meets the needs for the whole window")


async def _check_hold_caps(conn: Connection, who: Principal, at: datetime, policy: Policy) -> None:
    """Refuse a hold beyond the key's or the force's cap on live holds. The force's lock is
    held to the end of the transaction, so concurrent holds of one force (any replica) count
    one after the other and never overshoot."""
    assert who.force_code is not None
    await bookings.lock_hold_caps(conn, who.force_code)
    live = await bookings.live_holds(conn, who.force_code, who.key_id, at)
    if live["by_key"] >= policy.hold_cap_per_key:
        raise HoldCapReached("holds_per_key", policy.hold_cap_per_key, live["key_next_lapse"], at)
    if live["by_force"] >= policy.hold_cap_per_force:
        raise HoldCapReached(
            "holds_per_force", policy.hold_cap_per_force, live["force_next_lapse"], at
        )


async def _claim(
    conn: Connection,
    booking_id: UUID,
    request: HoldRequest,
    bed_id: UUID,
    at: datetime,
    policy: Policy,
) -> bool:
    try:
        # A savepoint: losing the race for this bed costs only this attempt, and rolling it
        # back releases the bed's lock before the next bed is tried.
        async with conn.transaction():
            if not await lock_bed_for_claim(conn, bed_id, at):
                raise _BedGone
            await bookings.insert_hold(
                conn,
                booking_id,
                request.site_id,
                bed_id,
                request.start,
                request.end,
                at + policy.hold_ttl,
            )
    except (asyncpg.ExclusionViolationError, _BedGone):
        return False
    return True


class _BedGone(Exception):
    """The bed was taken out of service or removed since it was found free."""


async def _insert_booking(
    conn: Connection, who: Principal, booking_id: UUID, request: HoldRequest
) -> None:
    await bookings.insert_booking(
        conn,
        booking_id,
        {
            "site_id": request.site_id,
            "force_code": who.force_code,
            "gender": request.needs.gender,
            "dependants": request.needs.dependants,
            "wheelchair": request.needs.wheelchair,
            "language": request.needs.language,
            "custody_suite": request.custody_suite,
            "person_ref": request.person_ref,
            "officer_collar": request.officer_collar,
            "notes": request.notes,
            "created_by": who.key_id,
        },
    )


async def act(
    conn: Connection,
    who: Principal,
    booking_id: UUID,
    action_name: str,
    at: datetime,
    policy: Policy,
    *,
    reason: str | None = None,
    new_end: datetime | None = None,
) -> str:
    """Take one lifecycle action; returns the state the booking is left in.

    The booking's row is locked first, so two actions on one booking queue rather than both
    acting on the state they read.
    """
    action = lifecycle.ACTIONS[action_name]
    lifecycle.require_allowed(action, who.role)
    if action.reason_required and not reason:
        raise ValidationProblem(
            f"a reason is required to {action.name} a booking",
            errors=[{"field": "reason", "message": "required for this action"}],
        )
    row = await bookings.lock_for_action(conn, booking_id, at)
    if row is None or not in_scope(who, row["force_code"], row["provider_id"]):
        raise NotFound("booking not found")
    status: str = row["status"]
    lifecycle.require_state(action, status)
    lifecycle.require_timing(action, row["start"], at, policy.no_show_grace)
    new_status = lifecycle.target_status(action, status, row["booking_mode"])

    if action.name == "extend":
        assert new_end is not None
        await _extend(conn, who, row, new_end, at)
        reason = reason or f"extended to {new_end.isoformat()}"
    elif new_status == "pending":
        await bookings.set_status(conn, booking_id, new_status, at + policy.provider_response)
    else:
        if action.name == "check-in" and at < row["start"]:
            # An early arrival moves the stay's start to now, if the bed is free from now on.
            await _claim_more(conn, who, row, at, row["end"], at, doing="start the stay now")
            reason = reason or f"arrived early; the stay starts at {at.isoformat()}"
        await bookings.set_status(conn, booking_id, new_status)
        if action.name == "check-in":
            await bookings.mark_checked_in(conn, booking_id, at)
        elif action.name == "check-out":
            await bookings.mark_checked_out(conn, booking_id, at)
    await bookings.record(
        conn,
        [
            Transition(
                booking_id=booking_id,
                action=action.name,
                status=new_status,
                at=at,
                actor=who.actor,
                api_key_id=who.key_id,
                reason=reason,
                event=lifecycle.event_type(action.name, new_status),
            )
        ],
    )
    return new_status


async def _extend(
    conn: Connection, who: Principal, row: asyncpg.Record, new_end: datetime, at: datetime
) -> None:
    check_end(new_end, at)
    if new_end <= row["end"]:
        raise Conflict(
            f"the stay already ends at {row['end'].isoformat()}; extend moves the end later",
            slug="not-an-extension",
        )
    await _claim_more(conn, who, row, row["start"], new_end, at, doing="make the stay longer")


async def _claim_more(
    conn: Connection,
    who: Principal,
    row: asyncpg.Record,
    start: datetime,
    end: datetime,
    at: datetime,
    *,
    doing: str,
) -> None:
    """Widen a booking's claim on its bed to [start, end) (a later end, an earlier start).

    Like a new hold: within the site's longest stay, on a bed still in service, and free for
    the added time, which the exclusion constraint decides.
    """
    if end - start > timedelta(hours=row["max_stay_hours"]):
        raise Conflict(
            f"the site's longest stay is {row['max_stay_hours']} hours; cannot {doing}",
            slug="stay-too-long",
        )
    added_from, added_to = (start, row["start"]) if start < row["start"] else (row["end"], end)
    try:
        async with conn.transaction():
            if not await lock_bed_for_claim(conn, row["bed_id"], at):
                raise Conflict(
                    f"the bed has been taken out of service; cannot {doing}",
                    slug="bed-unavailable",
                )
            await bookings.set_period(conn, row["id"], start, end)
    except asyncpg.ExclusionViolationError:
        claim = await allocations.find_conflict(conn, row["bed_id"], added_from, added_to, at)
        # Name the claim only to whoever may see it: a block is its provider's, a booking its
        # force's (and the site's provider's); to anyone else the bed is just not free.
        named = claim is not None and (
            in_scope(who, claim["force_code"], claim["provider_id"])
            if claim["kind"] == "booking"
            else who.role != "officer"
        )
        raise claims.overlap(
            claim,
            slug="bed-unavailable",
            detail=f"the bed is not free to {doing}",
            named=named,
        ) from None
