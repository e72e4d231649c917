"""Availability search, holds, and the booking lifecycle."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence
from datetime import timedelta
from uuid import UUID

import asyncpg
import structlog
from aiohttp import web

from service import keys, paging
from service.db import Connection
from service.domain import bookings as domain
from service.domain.access import Principal, require_role
from service.domain.beds import Needs
from service.domain.ranking import shown_distance
from service.errors import NotFound, Problem, ValidationProblem
from service.handlers.common import (
    connection,
    json_response,
    now,
    path_id,
    principal,
    read_body,
    read_query,
    transaction,
)
from service.models import (
    ActionIn,
    AvailabilityItem,
    AvailabilityOut,
    AvailabilityQuery,
    BookingIn,
    BookingListQuery,
    BookingOut,
    BookingSite,
    ExtendIn,
    HistoryEntry,
    NeedsOut,
    Page,
)
from service.queries import availability as availability_queries
from service.queries import bookings

log = structlog.get_logger(__name__)

# The longest window a search may ask about: the longest stay any site may offer.
MAX_SEARCH_WINDOW = timedelta(hours=720)


# --- availability ---------------------------------------------------------------------------


async def availability(request: web.Request) -> web.Response:
    who = principal(request)
    require_role(who, "officer", "admin")
    query = read_query(request, AvailabilityQuery)
    at = now(request)
    start = query.start or at
    domain.check_window(start, query.end, at)
    if query.end - start > MAX_SEARCH_WINDOW:
        raise ValidationProblem(
            "the window is longer than any stay",
            errors=[{"field": "end", "message": "at most 720 hours after start"}],
        )
    needs = Needs(
        gender=query.gender,
        dependants=query.dependants,
        wheelchair=query.wheelchair,
        language=query.language,
    )
    near = (
        None
        if query.near_lat is None or query.near_lon is None
        else (query.near_lat, query.near_lon)
    )
    avoid = None
    if query.avoid_lat is not None and query.avoid_lon is not None and query.avoid_km:
        avoid = (query.avoid_lat, query.avoid_lon, query.avoid_km)
    async with connection(request) as conn:
        rows = await availability_queries.search(
            conn,
            start=start,
            end=query.end,
            at=at,
            needs=needs,
            near=near,
            max_km=query.max_km,
            avoid=avoid,
            searcher=availability_queries.Searcher(
                api_key_id=who.key_id,
                role=who.role,
                force_code=who.force_code,
                refused_before=request.app[keys.RATE_LIMITER].refused_searches(who.key_id),
            ),
            limit=query.limit,
        )
    request.app[keys.METRICS].searches.labels("yes" if rows else "no").inc()
    return json_response(
        AvailabilityOut(items=[_item(r) for r in rows], total=rows[0]["total"] if rows else 0)
    )


def _item(row: asyncpg.Record) -> AvailabilityItem:
    return AvailabilityItem(
        site_id=row["id"],
        name=row["name"],
        provider=row["provider"],
        area=row["area"],
        distance_km=shown_distance(row["distance_km"]),
        free_beds=row["free_beds"],
        booking_mode=row["booking_mode"],
        languages=row["languages"],
        interpreter_on_call=row["interpreter_on_call"],
    )


# --- presenting bookings --------------------------------------------------------------------


def booking_out(
    row: asyncpg.Record, history: Sequence[asyncpg.Record], who: Principal
) -> BookingOut:
    show = domain.can_see_address(who, row["status"])
    return BookingOut(
        id=row["id"],
        site_id=row["site_id"],
        force=row["force_code"],
        bed_id=row["bed_id"],
        status=row["status"],
        start=row["start"],
        end=row["end"],
        needs=NeedsOut(
            gender=row["gender"],
            dependants=row["dependants"],
            wheelchair=row["wheelchair"],
            language=row["language"],
        ),
        person_ref=row["person_ref"],
        custody_suite=row["custody_suite"],
        officer_collar=row["officer_collar"],
        notes=row["notes"],
        hold_expires_at=row["hold_expires_at"],
        respond_by=row["respond_by"],
        checked_in_at=row["checked_in_at"],
        checked_out_at=row["checked_out_at"],
        history=[
            HistoryEntry(
                action=h["action"],
                status=h["status"],
                at=h["at"],
                by=h["actor"],
                reason=h["reason"],
            )
            for h in history
        ],
        site=BookingSite(
            name=row["site_name"],
            area=row["site_area"],
            address=row["site_address"] if show else None,
            phone=row["site_phone"] if show else None,
        ),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


async def _present(request: web.Request, booking_id: UUID) -> BookingOut:
    async with connection(request) as conn:
        return await _present_on(conn, request, booking_id)


async def _present_on(conn: Connection, request: web.Request, booking_id: UUID) -> BookingOut:
    """The booking as the caller may see it, read on `conn`: inside a change's transaction, so
    the answer is read before the change commits and a failure here undoes the change."""
    who = principal(request)
    row = await bookings.get(conn, booking_id, now(request))
    if row is None or not domain.in_scope(who, row["force_code"], row["provider_id"]):
        raise NotFound("booking not found")
    history = await bookings.history(conn, [booking_id])
    return booking_out(row, history, who)


def _replay_by_id(request: web.Request, booking_id: UUID) -> None:
    """An Idempotency-Key replay of this answer re-reads the booking (see replay_booking), so
    no body with the address or personal fields in it is stored."""
    request[keys.REPLAY_BOOKING] = booking_id
    request[keys.REPLAY_BODY] = b""


async def replay_booking(
    request: web.Request, booking_id: UUID, *, status: int, headers: dict[str, str]
) -> web.Response:
    """The replay of a stored booking answer: its status code and headers, and the booking as
    the caller may see it now."""
    return json_response(await _present(request, booking_id), status=status, headers=headers)


# --- routes ---------------------------------------------------------------------------------


async def create_booking(request: web.Request) -> web.Response:
    who = principal(request)
    require_role(who, "officer")
    body = await read_body(request, BookingIn)
    at = now(request)
    domain.check_window(body.start, body.end, at)
    hold = domain.HoldRequest(
        site_id=body.site_id,
        start=body.start,
        end=body.end,
        needs=Needs(
            gender=body.needs.gender,
            dependants=body.needs.dependants,
            wheelchair=body.needs.wheelchair,
            language=body.needs.language,
        ),
        person_ref=body.person_ref,
        custody_suite=body.custody_suite,
        officer_collar=body.officer_collar,
        notes=body.notes,
    )
    metrics = request.app[keys.METRICS]
    try:
        async with transaction(request) as conn:
            booking_id = await domain.hold(conn, who, hold, at, request.app[keys.POLICY])
            created = await _present_on(conn, request, booking_id)
    except domain.HoldCapReached as refused:
        metrics.limited.labels(refused.cap).inc()
        metrics.holds.labels("capped").inc()
        log.info("hold refused by cap", limit=refused.cap)
        raise
    except Problem as problem:
        metrics.holds.labels("no_capacity" if problem.slug == "no-capacity" else "refused").inc()
        raise
    metrics.holds.labels("held").inc()
    metrics.bookings.labels("held").inc()
    _replay_by_id(request, booking_id)
    return json_response(created, status=201, headers={"Location": f"/v1/bookings/{booking_id}"})


async def get_booking(request: web.Request) -> web.Response:
    return json_response(await _present(request, path_id(request, "booking_id", "booking")))


async def list_bookings(request: web.Request) -> web.Response:
    who = principal(request)
    query = read_query(request, BookingListQuery)
    async with connection(request) as conn:
        rows = await bookings.list_page(
            conn,
            now(request),
            scope_force=who.force_code if who.role == "officer" else None,
            scope_provider=who.provider_id if who.role == "provider" else None,
            force=query.force,
            site_id=query.site_id,
            status=query.status,
            updated_since=query.updated_since,
            after=paging.decode_position(query.cursor),
            limit=query.limit + 1,
        )
        items, cursor = paging.split_page(rows, query.limit, paging.by_created)
        history = await bookings.history(conn, [r["id"] for r in items])
    by_booking: dict[UUID, list[asyncpg.Record]] = defaultdict(list)
    for entry in history:
        by_booking[entry["booking_id"]].append(entry)
    return json_response(
        Page[BookingOut](
            items=[booking_out(r, by_booking[r["id"]], who) for r in items], next_cursor=cursor
        )
    )


Handler = Callable[[web.Request], Awaitable[web.Response]]


def action_handler(action: str) -> Handler:
    """POST /v1/bookings/{id}/<action>: one handler per lifecycle action."""

    async def handle(request: web.Request) -> web.Response:
        who = principal(request)
        booking_id = path_id(request, "booking_id", "booking")
        new_end = None
        if action == "extend":
            extend = await read_body(request, ExtendIn)
            reason, new_end = extend.reason, extend.end
        else:
            reason = (await read_body(request, ActionIn)).reason if request.body_exists else None
        async with transaction(request) as conn:
            status = await domain.act(
                conn,
                who,
                booking_id,
                action,
                now(request),
                request.app[keys.POLICY],
                reason=reason,
                new_end=new_end,
            )
            changed = await _present_on(conn, request, booking_id)
        request.app[keys.METRICS].bookings.labels(status).inc()
        _replay_by_id(request, booking_id)
        return json_response(changed)

    handle.__name__ = f"{action.replace('-', '_')}_booking"
    return handle
