"""Availability search, holds, the booking lifecycle and the person's feedback over HTTP:
parse, call the use case (service/usecases/bookings.py, availability.py, feedback.py),
present, count."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import partial
from uuid import UUID

import structlog
from aiohttp import web

from service import keys, paging
from service.domain.beds import Needs
from service.domain.stays import BookingCapReached, HoldCapReached, TooFarAhead
from service.errors import Forbidden, Problem, ValidationProblem
from service.handlers.common import (
    answer,
    path_id,
    principal,
    read_body,
    read_query,
    write,
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
from service.usecases.results import BookingShown
from service.usecases.tx import Tx
from service.usecases.uow import Answer, UseCase
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
    )
    searches = request.app[keys.METRICS].searches
    # A writing unit: the search's one statement records it in the search log.
    return await write(
        request,
        UseCase(availability_usecases.search, query=search),
        lambda found: answer(AvailabilityOut.model_validate(found, from_attributes=True)),
        after=lambda found: searches.labels("yes" if found.items else "no").inc(),
    )


# --- bookings -------------------------------------------------------------------------------


def booking_out(shown: BookingShown) -> BookingOut:
    """The booking as the API shows it: what the use case left unset (the person's words, for
    an officer) is absent, not null."""
    return BookingOut.model_validate(shown.model_dump(exclude_unset=True))


def _booking(*, status: int = 200, location: bool = False) -> Callable[[BookingShown], Answer]:
    """A booking's answer. An Idempotency-Key replay of it re-reads the booking (`_replay`),
    so no body with the address or personal fields in it is stored."""

    def present(shown: BookingShown) -> Answer:
        headers = {"Location": f"/v1/bookings/{shown.id}"} if location else None
        return answer(booking_out(shown), status=status, headers=headers, booking_id=shown.id)

    return present


async def _replay(tx: Tx, booking_id: UUID) -> bytes:
    """The replay of a stored booking answer: the booking as the caller may see it now (read,
    and audited as read, in the replay's own unit of work)."""
    return booking_out(await bookings.show(tx, booking_id)).model_dump_json().encode()


async def _hold(request: web.Request) -> UseCase[Tx, BookingShown]:
    body = await read_body(request, BookingIn)
    command = bookings.Hold(
        **body.model_dump(exclude={"needs"}), needs=Needs(**body.needs.model_dump())
    )
    return UseCase(bookings.hold, command=command)


async def create_booking(request: web.Request) -> web.Response:
    metrics = request.app[keys.METRICS]

    def held(_: BookingShown) -> None:
        metrics.holds.labels("held").inc()
        metrics.bookings.labels("held").inc()

    try:
        return await write(
            request,
            _hold(request),
            _booking(status=201, location=True),
            replay=_replay,
            after=held,
        )
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


async def get_booking(request: web.Request) -> web.Response:
    booking_id = path_id(request, "booking_id", "booking")
    show = UseCase(bookings.show, booking_id=booking_id)
    return await write(request, show, _booking())


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

    def present(page: paging.Page[BookingShown]) -> Answer:
        items = [booking_out(b) for b in page.items]
        return answer(Page[BookingOut](items=items, next_cursor=page.next_cursor))

    listed = UseCase(bookings.list_bookings, query=page_query)
    return await write(request, listed, present)


Handler = Callable[[web.Request], Awaitable[web.Response]]

# The actions that carry a reason code, each with its body.
_CODED: dict[str, type[DeclineIn | CancelIn | NoShowIn]] = {
    "decline": DeclineIn,
    "cancel": CancelIn,
    "no-show": NoShowIn,
}


def action_handler(action: str) -> Handler:
    """POST /v1/bookings/{id}/<action>: one handler per lifecycle action."""

    async def parse(request: web.Request) -> UseCase[Tx, BookingShown]:
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
        return UseCase(
            bookings.act,
            booking_id=booking_id,
            action=action,
            command=step,
        )

    async def handle(request: web.Request) -> web.Response:
        changed = request.app[keys.METRICS].bookings
        return await write(
            request,
            parse(request),
            _booking(),
            replay=_replay,
            after=lambda acted: changed.labels(acted.status).inc(),
        )

    handle.__name__ = f"{action.replace('-', '_')}_booking"
    return handle


async def _feedback(request: web.Request) -> UseCase[Tx, BookingShown]:
    booking_id = path_id(request, "booking_id", "booking")
    body = await read_body(request, FeedbackIn)
    answers = feedback.Answers(**body.model_dump(exclude={"consent"}))
    return UseCase(feedback.record, booking_id=booking_id, answers=answers)


async def create_feedback(request: web.Request) -> web.Response:
    """POST /v1/bookings/{id}/feedback: the person's own answers, recorded by the provider.
    Replayed by re-reading the booking: the person's words are never stored as an answer."""
    return await write(request, _feedback(request), _booking(status=201), replay=_replay)
