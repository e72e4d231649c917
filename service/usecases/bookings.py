"""Holding a bed, moving a booking through its lifecycle, and showing bookings.

Each function runs inside the caller's Tx, so a booking, its history, its events, its audit
rows and the answer read back commit together or not at all. Every booking shown to a caller
is audited as read (SPEC section 8): one row per booking, naming the personal fields shown.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import Any
from uuid import UUID

import asyncpg

from service import paging
from service.domain import claims, lifecycle
from service.domain.access import address_withheld, in_scope, require_role, withheld_detail
from service.domain.beds import Bed, Needs, best_fit
from service.domain.stays import (
    HOLD_ROUNDS,
    BookingCapReached,
    HoldCapReached,
    check_end,
    check_lead,
    check_window,
    may_see_claim,
    no_capacity,
)
from service.errors import Conflict, NotFound, Unprocessable
from service.ids import new_id
from service.paging import Page
from service.queries import bookings, disclosures
from service.usecases import alerts
from service.usecases.changes import Change, record
from service.usecases.claims import ClaimRefused, claim_bed
from service.usecases.results import BookingShown
from service.usecases.tx import Tx
from service.vocab import (
    FEEDBACK_PERSONAL_FIELDS,
    PERSONAL_FIELDS,
    AddressWithheld,
    AlertKind,
    AuditAction,
    BookingStatus,
    ObjectType,
    Role,
    SiteStatus,
)

# What SPEC section 4 withholds from an officer until the person is about to travel.
SITE_CONTACT = ("address", "phone")
# The disclosure budget counts distinct sites shown over this rolling window.
DISCLOSURE_WINDOW = timedelta(hours=24)


@dataclass(frozen=True)
class Hold:
    """An officer's request for a bed at a site for a window."""

    site_id: UUID
    start: datetime
    end: datetime
    needs: Needs
    person_ref: str
    custody_suite: str
    officer_collar: str
    notes: str | None = None


@dataclass(frozen=True)
class Step:
    """What a lifecycle action carries: a reason code and a free-text reason (decline, cancel,
    no-show), an optional reason (the others), and an extension's new end."""

    reason: str | None = None
    end: datetime | None = None
    reason_code: str | None = None


@dataclass(frozen=True)
class ListQuery:
    """Filters of a bookings list, and the page: `after` is the (created_at, id) of the last
    booking of the page before."""

    limit: int
    status: BookingStatus | None = None
    site_id: UUID | None = None
    force: str | None = None
    updated_since: datetime | None = None
    after: tuple[datetime, UUID] | None = None


# --- showing --------------------------------------------------------------------------------


async def _visible(tx: Tx, row: asyncpg.Record, *, listed: bool = False) -> BookingShown:
    """The booking as the caller may see it: the site's address and phone only where allowed
    (issue 14: to an officer, once the person is about to travel, never for a phone-only site,
    never in a list, and within the disclosure budget), else why not."""
    who = tx.caller
    booking = dict(row)
    del booking["provider_id"]
    phone_only = booking.pop("phone_only")
    site = dict(booking["site"])
    withheld = address_withheld(
        who,
        booking["status"],
        booking["start"],
        tx.at,
        lead=tx.policy.address_lead,
        phone_only=phone_only,
    )
    if withheld is None and who.role == Role.OFFICER:
        withheld = (
            AddressWithheld.LISTED
            if listed
            else await _disclose(tx, booking["id"], booking["site_id"])
        )
    if withheld is not None:
        for name in SITE_CONTACT:
            site.pop(name, None)
        site["address_withheld"] = {
            "reason": withheld,
            "detail": withheld_detail(withheld, booking["start"], tx.policy.address_lead),
        }
    booking["site"] = site
    feedback = booking["feedback"]
    if feedback is not None and who.role == Role.OFFICER:
        # Officers never read the person's own words (issue 10); the coded answers they may.
        booking["feedback"] = {
            k: v for k, v in feedback.items() if k not in FEEDBACK_PERSONAL_FIELDS
        }
    return BookingShown.model_validate(booking)


async def _disclose(tx: Tx, booking_id: UUID, site_id: UUID) -> AddressWithheld | None:
    """Show an officer key a booking's site contact within its budget: distinct sites per key
    and per force over a rolling day. Seeing again what was already shown spends nothing.
    Past the budget the address is withheld and the coordinators alerted."""
    policy = tx.policy
    who = tx.caller
    assert who.force_code is not None
    if await disclosures.shown_before(tx.conn, booking_id, who.key_id):
        return None
    await disclosures.lock(tx.conn, who.force_code)
    spent = await disclosures.spent(
        tx.conn, who.force_code, who.key_id, site_id, tx.at - DISCLOSURE_WINDOW
    )
    over = None
    if not spent["key_knows_site"] and spent["by_key"] >= policy.disclosure_budget_per_key:
        over = f"{policy.disclosure_budget_per_key} distinct sites a key"
    elif not spent["force_knows_site"] and spent["by_force"] >= policy.disclosure_budget_per_force:
        over = f"{policy.disclosure_budget_per_force} distinct sites a force"
    if over is not None:
        await alerts.raise_alert(
            tx,
            alerts.Alert(
                kind=AlertKind.DISCLOSURE_BUDGET,
                detail=(
                    f"{who.actor} key asked for a site address past the disclosure budget"
                    f" ({over} in 24 hours): withheld"
                ),
                api_key_id=who.key_id,
                force_code=who.force_code,
                site_id=site_id,
                booking_id=booking_id,
            ),
        )
        return AddressWithheld.BUDGET_SPENT
    await disclosures.insert(tx.conn, tx.at, who.key_id, who.force_code, site_id, booking_id)
    return None


def _shown(booking: BookingShown) -> list[str]:
    """What a read audit row names: the personal fields, site contact details and the
    person's own feedback text shown."""
    site, feedback = booking.site, booking.feedback
    return (
        [name for name in PERSONAL_FIELDS if getattr(booking, name) is not None]
        + [f"site.{name}" for name in SITE_CONTACT if getattr(site, name) is not None]
        + [
            f"feedback.{name}"
            for name in FEEDBACK_PERSONAL_FIELDS
            if feedback is not None and getattr(feedback, name)
        ]
    )


async def show(tx: Tx, booking_id: UUID) -> BookingShown:
    """One booking as the caller may see it, as the API names its fields; audited as read.
    A booking outside the caller's scope is not found (its existence is not revealed)."""
    who = tx.caller
    row = await bookings.get(tx.conn, booking_id, tx.at)
    if row is None or not in_scope(who, row["force"], row["provider_id"]):
        raise NotFound("booking not found")
    booking = await _visible(tx, row)
    await tx.audit(AuditAction.READ, ObjectType.BOOKING, booking_id, _shown(booking))
    return booking


async def list_bookings(tx: Tx, query: ListQuery) -> Page[BookingShown]:
    """A page of the bookings in the caller's scope (an officer's force, a provider's sites,
    all for admins), oldest first; each booking on the page is audited as read."""
    who = tx.caller
    rows = await bookings.list_page(
        tx.conn,
        tx.at,
        scope_force=who.force_filter,
        scope_provider=who.provider_filter,
        force=query.force,
        site_id=query.site_id,
        status=query.status,
        updated_since=query.updated_since,
        after=query.after,
        # One more than the page: it only says that another page follows.
        limit=query.limit + 1,
    )
    page = paging.page(rows, query.limit, paging.by_created)
    items = [await _visible(tx, row, listed=True) for row in page.items]
    await tx.audit_many(AuditAction.READ, ObjectType.BOOKING, [(b.id, _shown(b)) for b in items])
    return Page(items, page.next_cursor)


# --- holding --------------------------------------------------------------------------------


async def hold(tx: Tx, command: Hold) -> BookingShown:
    """Hold the best-fitting free bed at the site for the window; returns the booking shown.

    The exclusion constraint is the arbiter between racing requests: when another request
    takes the chosen bed first, the claim is refused and the next-best free bed is tried. No
    bed left is 409 no-capacity.
    """
    who = tx.caller
    require_role(who, Role.OFFICER)
    assert who.force_code is not None
    gender = command.needs.gender
    assert gender is not None, "a hold names the person's gender"
    # A malformed window is a 400 like any bad input; only a well-formed one too far ahead is
    # the limit's refusal (429, audited and alerted).
    check_window(command.start, command.end, tx.at)
    check_lead(command.start, tx.at, tx.policy.max_lead)
    site = await bookings.site_for_booking(tx.conn, command.site_id)
    if site is None:
        raise NotFound("site not found")
    if site["status"] != SiteStatus.ACTIVE:
        raise no_capacity(f"the site is {site['status']} and takes no bookings")
    if gender not in site["genders_accepted"]:
        raise no_capacity(f"the site does not accept gender '{gender}'")
    if command.end - command.start > timedelta(hours=site["max_stay_hours"]):
        raise Unprocessable(
            f"the site's longest stay is {site['max_stay_hours']} hours",
            slug="stay-too-long",
        )
    await _check_caps(tx)
    booking_id = new_id()
    bed_id = await _claim_best_bed(tx, booking_id, command)
    await bookings.insert_booking(
        tx.conn,
        bookings.NewBooking(
            id=booking_id,
            site_id=command.site_id,
            force_code=who.force_code,
            gender=gender,
            dependants=command.needs.dependants,
            wheelchair=command.needs.wheelchair,
            language=command.needs.language,
            custody_suite=command.custody_suite,
            person_ref=command.person_ref,
            officer_collar=command.officer_collar,
            notes=command.notes,
            created_by=who.key_id,
            created_at=tx.at,
        ),
    )
    await record(
        tx,
        Change.step(
            AuditAction.HOLD,
            booking_id,
            command.site_id,
            BookingStatus.HELD,
            # What the officer gave (the request's fields), and what the service set.
            {
                **asdict(command),
                "force": who.force_code,
                "bed_id": bed_id,
                "status": BookingStatus.HELD,
                "hold_expires_at": tx.at + tx.policy.hold_ttl,
            },
        ),
    )
    return await show(tx, booking_id)


async def _claim_best_bed(tx: Tx, booking_id: UUID, command: Hold) -> UUID:
    """Claim the window on the best free bed that can still be had; returns the bed."""
    tried: set[UUID] = set()
    for _ in range(HOLD_ROUNDS):
        free = await bookings.free_beds(
            tx.conn,
            command.site_id,
            command.start,
            command.end,
            command.needs.dependants,
            command.needs.wheelchair,
            tx.at,
        )
        candidates = [
            bed
            for bed in best_fit((Bed(**dict(r)) for r in free), command.needs)
            if bed.id not in tried
        ]
        if not candidates:
            break
        for bed in candidates:
            tried.add(bed.id)
            insert = partial(
                bookings.insert_hold,
                tx.conn,
                booking_id,
                command.site_id,
                bed.id,
                command.start,
                command.end,
                tx.at + tx.policy.hold_ttl,
                tx.at,
            )
            try:
                await claim_bed(tx, bed.id, command.start, command.end, insert)
            except ClaimRefused:
                # Taken by a racing hold, or out of service since it was found free.
                continue
            return bed.id
    raise no_capacity("no bed at this site meets the needs for the whole window")


async def _check_caps(tx: Tx) -> None:
    """Refuse a hold beyond the key's or the force's cap on live holds, or on bookings not yet
    arrived (held, pending and confirmed together: confirming is no way round it). The
    force's lock is held to the end of the transaction, so concurrent holds of one force (any
    replica) count one after the other and never overshoot."""
    policy = tx.policy
    who = tx.caller
    assert who.force_code is not None
    await bookings.lock_hold_caps(tx.conn, who.force_code)
    n = await bookings.open_bookings(tx.conn, who.force_code, who.key_id, tx.at)
    if n["open_by_key"] >= policy.booking_cap_per_key:
        raise BookingCapReached(
            "bookings_per_key",
            policy.booking_cap_per_key,
            _until(n["key_next_lapse"], tx.at, policy.hold_ttl),
        )
    if n["open_by_force"] >= policy.booking_cap_per_force:
        raise BookingCapReached(
            "bookings_per_force",
            policy.booking_cap_per_force,
            _until(n["force_next_lapse"], tx.at, policy.hold_ttl),
        )
    if n["holds_by_key"] >= policy.hold_cap_per_key:
        raise HoldCapReached("holds_per_key", policy.hold_cap_per_key, n["key_next_lapse"], tx.at)
    if n["holds_by_force"] >= policy.hold_cap_per_force:
        raise HoldCapReached(
            "holds_per_force", policy.hold_cap_per_force, n["force_next_lapse"], tx.at
        )


def _until(lapse: datetime | None, at: datetime, otherwise: timedelta) -> timedelta:
    """How long until a hold or request lapses and frees a place under a cap; with none to
    lapse (every place is a confirmation waiting for its person), a hold's lifetime."""
    return otherwise if lapse is None else lapse - at


# --- the lifecycle --------------------------------------------------------------------------


async def act(tx: Tx, booking_id: UUID, action: str, command: Step) -> BookingShown:
    """Take one lifecycle action; returns the booking shown as it is left.

    The booking's row is locked first, so two actions on one booking queue rather than both
    acting on the state they read.
    """
    who = tx.caller
    step = lifecycle.ACTIONS[action]
    lifecycle.require_allowed(step, who.role)
    reason_code = lifecycle.reason_code(step, command.reason_code, command.reason)
    row = await bookings.lock_for_action(tx.conn, booking_id, tx.at)
    if row is None or not in_scope(who, row["force_code"], row["provider_id"]):
        raise NotFound("booking not found")
    lifecycle.require_state(step, row["status"])
    lifecycle.require_timing(step, row["start"], tx.at, tx.policy.no_show_grace)
    new_status = lifecycle.target_status(step, row["status"], row["booking_mode"])

    reason = command.reason
    # What the step writes, as the API names it: its audit row names those that changed.
    wrote: dict[str, Any] = {}
    if step.name == AuditAction.EXTEND:
        assert command.end is not None
        await _extend(tx, row, command.end)
        reason = reason or f"extended to {command.end.isoformat()}"
        wrote["end"] = command.end
    elif new_status == BookingStatus.PENDING:
        respond_by = tx.at + tx.policy.provider_response
        await bookings.set_status(tx.conn, booking_id, new_status, tx.at, respond_by)
        wrote.update(status=new_status, respond_by=respond_by)
    else:
        wrote["status"] = new_status
        if step.name == AuditAction.CHECK_IN and tx.at < row["start"]:
            # An early arrival moves the stay's start to now, if the bed is free from now on.
            await _widen(tx, row, tx.at, row["end"], doing="start the stay now")
            reason = reason or f"arrived early; the stay starts at {tx.at.isoformat()}"
            wrote["start"] = tx.at
        await bookings.set_status(
            tx.conn, booking_id, new_status, tx.at, ends_stay=lifecycle.ends_stay(new_status)
        )
        if step.name == AuditAction.CHECK_IN:
            await bookings.mark_checked_in(tx.conn, booking_id, tx.at)
            wrote["checked_in_at"] = tx.at
        elif step.name == AuditAction.CHECK_OUT:
            await bookings.mark_checked_out(tx.conn, booking_id, tx.at)
            wrote["checked_out_at"] = tx.at

    if step.name == AuditAction.CANCEL:
        await _disclosed_without_placement(tx, booking_id)
    await record(
        tx,
        Change.step(
            step.name,
            booking_id,
            row["site_id"],
            new_status,
            wrote,
            before=dict(row),
            reason=reason,
            reason_code=reason_code,
        ),
    )
    return await show(tx, booking_id)


async def _disclosed_without_placement(tx: Tx, booking_id: UUID) -> None:
    """A booking cancelled soon after its site's address was shown to an officer key: a
    disclosure without placement, marked (reports count it) and alerted, naming the key that
    was shown the address."""
    shown_since = tx.at - tx.policy.disclosure_without_placement
    for shown in await disclosures.mark_without_placement(tx.conn, booking_id, tx.at, shown_since):
        minutes = max(0, round((tx.at - shown["at"]).total_seconds() / 60))
        await alerts.raise_alert(
            tx,
            alerts.Alert(
                kind=AlertKind.DISCLOSURE_WITHOUT_PLACEMENT,
                detail=(
                    f"a booking of force {shown['force_code']} was cancelled {minutes} minutes"
                    " after its site's address was shown to this key"
                ),
                api_key_id=shown["api_key_id"],
                force_code=shown["force_code"],
                site_id=shown["site_id"],
                booking_id=booking_id,
                once_per=f"{booking_id}:{shown['api_key_id']}",
            ),
        )


async def _extend(tx: Tx, row: asyncpg.Record, new_end: datetime) -> None:
    check_end(new_end, tx.at)
    if new_end <= row["end"]:
        raise Conflict(
            f"the stay already ends at {row['end'].isoformat()}; extend moves the end later",
            slug="not-an-extension",
        )
    await _widen(tx, row, row["start"], new_end, doing="make the stay longer")


async def _widen(
    tx: Tx, row: asyncpg.Record, start: datetime, end: datetime, *, doing: str
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
    move = partial(bookings.set_period, tx.conn, row["id"], start, end, tx.at)
    try:
        await claim_bed(tx, row["bed_id"], added_from, added_to, move)
    except ClaimRefused as refused:
        if refused.out_of_service:
            raise Conflict(
                f"the bed has been taken out of service; cannot {doing}",
                slug="bed-unavailable",
            ) from None
        claim = refused.claim
        named = claim is not None and may_see_claim(
            tx.caller, claim["kind"], claim["force_code"], claim["provider_id"]
        )
        raise claims.overlap(
            claim,
            slug="bed-unavailable",
            detail=f"the bed is not free to {doing}",
            named=named,
        ) from None
