"""Availability search, holds, the booking lifecycle and the person's feedback over HTTP:
parse, call the use case (service/usecases/bookings.py, availability.py, feedback.py),
present, count."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta
from functools import partial
from uuid import UUID

import structlog
from aiohttp import web

from service import keys, paging
from service.domain.beds import Needs
from service.domain.stays import BookingCapReached, HoldCapReached, TooFarAhead
from service.errors import Forbidden, Problem, ValidationProblem
from service.handlers.common import (
    json_response,
    path_id,
    principal,
    read_body,
    read_query,
    reading,
    writing,
)
from service.models import (
    ActionIn,
    AvailabilityOut,
    AvailabilityQuery,
    BookingIn,
    BookingListQuery,
    BookingOut,
    CancelIn,
    DeclineIn,
    ExtendIn,
    FeedbackIn,
    NoShowIn,
    Page,
)
from service.usecases import alerts, bookings, feedback
from service.usecases import availability as availability_usecases
from service.vocab import AlertKind

log = structlog.get_logger(__name__)

# Refusals made before a hold is attempted (a window out of range, a key without the officer
# role) are not hold attempts: pos_hold_attempts_total counts what reached the site's beds.
_NOT_ATTEMPTED = (ValidationProblem, Forbidden)
_CAP_ALERTS = {
    HoldCapReached: AlertKind.HOLD_CAP,
    BookingCapReached: AlertKind.BOOKING_CAP,
    TooFarAhead: AlertKind.TOO_FAR_AHEAD,
}


# --- availability ---------------------------------------------------------------------------


async def availability(request: web.Request) -> web.Response:
    query = read_query(request, AvailabilityQuery)
    near = (
        None
        if query.near_lat is None or query.near_lon is None
        else (query.near_lat, query.near_lon)
    )
    avoid = None
    if query.avoid_lat is not None and query.avoid_lon is not None and query.avoid_km:
        avoid = (query.avoid_lat, query.avoid_lon, query.avoid_km)
    search = availability_usecases.Search(
        start=query.start,
        end=query.end,
        gender=query.gender,
        dependants=query.dependants,
        wheelchair=query.wheelchair,
        language=query.language,
        near=near,
        max_km=query.max_km,
        avoid=avoid,
        limit=query.limit,
        refused_before=partial(
            request.app[keys.RATE_LIMITER].refused_searches, principal(request).key_id
        ),
        stale_after=timedelta(hours=request.app[keys.SETTINGS].stale_after_hours),
        horizon=request.app[keys.POLICY].max_lead,
    )
    # One statement, recorded as it runs: a plain connection, no transaction (the bench
    # measures this path).
    async with reading(request) as tx:
        found = AvailabilityOut.model_validate(await availability_usecases.search(tx, search))
    request.app[keys.METRICS].searches.labels("yes" if found.items else "no").inc()
    return json_response(found)


# --- bookings -------------------------------------------------------------------------------


def _replay_by_id(request: web.Request, booking_id: UUID) -> None:
    """An Idempotency-Key replay of this answer re-reads the booking (see replay_booking), so
    no body with the address or personal fields in it is stored."""
    request[keys.REPLAY_BOOKING] = booking_id
    request[keys.REPLAY_BODY] = b""


async def replay_booking(
    request: web.Request, booking_id: UUID, *, status: int, headers: dict[str, str]
) -> web.Response:
    """The replay of a stored booking answer: its status code and headers, and the booking as
    the caller may see it now (read, and audited as read, in the replay's own transaction)."""
    async with writing(request) as tx:
        shown = BookingOut.model_validate(
            await bookings.show(tx, booking_id, policy=request.app[keys.POLICY])
        )
    return json_response(shown, status=status, headers=headers)


async def create_booking(request: web.Request) -> web.Response:
    body = await read_body(request, BookingIn)
    command = bookings.Hold(
        **body.model_dump(exclude={"needs"}), needs=Needs(**body.needs.model_dump())
    )
    metrics = request.app[keys.METRICS]
    try:
        # Presented inside the transaction: a failure there undoes the hold.
        async with writing(request) as tx:
            held = await bookings.hold(tx, command, policy=request.app[keys.POLICY])
            created = BookingOut.model_validate(held)
    except (HoldCapReached, BookingCapReached, TooFarAhead) as refused:
        metrics.limited.labels(refused.cap).inc()
        metrics.holds.labels("capped").inc()
        log.info("hold refused by cap", limit=refused.cap)
        # Audited and alerted by service.refusals once this request's unit of work (and its
        # connection) is gone: the refused transaction rolls back.
        request[keys.REFUSAL] = alerts.Refusal(
            refused.cap, _CAP_ALERTS[type(refused)], refused.detail
        )
        raise
    except _NOT_ATTEMPTED:
        raise
    except Problem as problem:
        metrics.holds.labels("no_capacity" if problem.slug == "no-capacity" else "refused").inc()
        raise
    metrics.holds.labels("held").inc()
    metrics.bookings.labels("held").inc()
    _replay_by_id(request, created.id)
    return json_response(created, status=201, headers={"Location": f"/v1/bookings/{created.id}"})


async def get_booking(request: web.Request) -> web.Response:
    booking_id = path_id(request, "booking_id", "booking")
    async with writing(request) as tx:
        shown = BookingOut.model_validate(
            await bookings.show(tx, booking_id, policy=request.app[keys.POLICY])
        )
    return json_response(shown)


async def list_bookings(request: web.Request) -> web.Response:
    query = read_query(request, BookingListQuery)
    page_query = bookings.ListQuery(
        limit=query.limit,
        status=query.status,
        site_id=query.site_id,
        force=query.force,
        updated_since=query.updated_since,
        after=paging.decode_position(query.cursor),
    )
    async with writing(request) as tx:
        page = await bookings.list_bookings(tx, page_query, policy=request.app[keys.POLICY])
        cursor = paging.by_created(page.items[-1]) if page.more and page.items else None
        shown = Page[BookingOut].model_validate({"items": page.items, "next_cursor": cursor})
    return json_response(shown)


Handler = Callable[[web.Request], Awaitable[web.Response]]

# The actions that carry a reason code, each with its body.
_CODED: dict[str, type[DeclineIn | CancelIn | NoShowIn]] = {
    "decline": DeclineIn,
    "cancel": CancelIn,
    "no-show": NoShowIn,
}


def action_handler(action: str) -> Handler:
    """POST /v1/bookings/{id}/<action>: one handler per lifecycle action."""

    async def handle(request: web.Request) -> web.Response:
        booking_id = path_id(request, "booking_id", "booking")
        if action == "extend":
            extend = await read_body(request, ExtendIn)
            step = bookings.Step(reason=extend.reason, end=extend.end)
        elif action in _CODED:
            coded = await read_body(request, _CODED[action]) if request.body_exists else None
            step = bookings.Step(
                reason=None if coded is None else coded.reason,
                reason_code=None if coded is None else coded.reason_code,
            )
        else:
            reason = (await read_body(request, ActionIn)).reason if request.body_exists else None
            step = bookings.Step(reason=reason)
        async with writing(request) as tx:
            acted = await bookings.act(
                tx, booking_id, action, step, policy=request.app[keys.POLICY]
            )
            changed = BookingOut.model_validate(acted)
        request.app[keys.METRICS].bookings.labels(changed.status).inc()
        _replay_by_id(request, booking_id)
        return json_response(changed)

    handle.__name__ = f"{action.replace('-', '_')}_booking"
    return handle


async def create_feedback(request: web.Request) -> web.Response:
    """POST /v1/bookings/{id}/feedback: the person's own answers, recorded by the provider."""
    booking_id = path_id(request, "booking_id", "booking")
    body = await read_body(request, FeedbackIn)
    answers = feedback.Answers(**body.model_dump(exclude={"consent"}))
    async with writing(request) as tx:
        shown = BookingOut.model_validate(
            await feedback.record(tx, booking_id, answers, policy=request.app[keys.POLICY])
        )
    # Replayed by re-reading the booking: the person's words are never stored as an answer.
    _replay_by_id(request, booking_id)
    return json_response(shown, status=201)
