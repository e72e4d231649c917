"""Every change records exactly what SPEC asks (issue 16 item 3): a walk through every booking
lifecycle action and every capacity change, through the API, finding after each one exactly
the history rows (SPEC section 3: who, when, why, its code), the events (section 7) and the
audit rows (section 8: the change under its action's name with the fields it changed, and one
read of the booking the answer shows) it wrote: no more and no fewer.

A capacity change records no history (sites, beds and blocks have none), and announces a
site.availability_changed only when a search could see it (tests/api/test_capacity_records.py
has each field). Feedback is a creation of personal data on a booking, audited, but neither a
transition nor an event.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pytest

from service.db import Pool
from service.jobs import sweep_once
from tests.support.api import Reply
from tests.support.clock import ManualClock
from tests.support.units import units_of
from tests.support.world import World, bed_body, booking_body, site_body, unique

# The marks: the last row of each record table before a step.
MARKS = """
SELECT (SELECT coalesce(max(id), 0) FROM booking_transition),
       (SELECT coalesce(max(id), 0) FROM event),
       (SELECT coalesce(max(id), 0) FROM audit)
"""

# Only the rows about this test's world: its provider's sites (and their bookings), its force's
# alerts, or written by its keys. The expiry job sweeps the whole database, other tests' lapsed
# holds too.
HISTORY = """
SELECT t.action, t.status, t.reason_code, t.reason, t.actor
FROM booking_transition t
JOIN booking b ON b.id = t.booking_id
JOIN site s ON s.id = b.site_id
WHERE t.id > $1 AND s.provider_id = $2::uuid
ORDER BY t.id
"""
EVENTS = """
SELECT type, booking_id::text, data ->> 'cause' AS cause
FROM event
WHERE id > $1
  AND (provider_id = $2::uuid OR (type = 'security.alert' AND data ->> 'force' = $3))
ORDER BY id
"""
AUDITS = """
SELECT role, action, object_type, object_id, fields
FROM audit
WHERE id > $1
  AND (api_key_id IN (SELECT id FROM api_key WHERE provider_id = $2::uuid OR force_code = $3)
       OR (object_type = 'booking'
           AND object_id IN (SELECT b.id::text
                             FROM booking b JOIN site s ON s.id = b.site_id
                             WHERE s.provider_id = $2::uuid)))
ORDER BY id
"""

SITE_FIELDS = sorted(
    [
        "address",
        "address_by_phone_only",
        "area",
        "booking_mode",
        "genders_accepted",
        "interpreter_on_call",
        "languages",
        "location",
        "max_stay_hours",
        "name",
        "phone",
        "status",
    ]
)
BED_FIELDS = ["in_service", "label", "max_dependants", "room_type", "wheelchair_accessible"]
BLOCK_FIELDS = ["bed_id", "end", "reason", "start"]
# What a new booking was given, as the API names it (and `notes` when given).
HOLD_FIELDS = [
    "bed_id",
    "custody_suite",
    "end",
    "force",
    "hold_expires_at",
    "needs",
    "officer_collar",
    "person_ref",
    "site_id",
    "start",
    "status",
]
PERSONAL = ("person_ref", "officer_collar", "notes")

History = tuple[str, str, str | None, str | None, str]
Event = tuple[str, str | None, str | None]
Audit = tuple[str, str, str, str, list[str]]


def _at(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def shown(booking: dict[str, Any]) -> list[str]:
    """The fields a read of this answer names: personal fields set, the site's address and
    phone when shown, the person's own words when shown."""
    fields = [name for name in PERSONAL if booking.get(name) is not None]
    fields += [f"site.{name}" for name in ("address", "phone") if name in booking["site"]]
    if (booking.get("feedback") or {}).get("what_would_help"):
        fields.append("feedback.what_would_help")
    return sorted(fields)


@dataclass
class Walk:
    world: World
    db: Pool
    clock: ManualClock
    marks: tuple[int, int, int] = (0, 0, 0)

    @property
    def officer(self) -> str:
        return f"officer:{self.world.force}"

    async def mark(self) -> None:
        async with self.db.acquire() as conn:
            self.marks = tuple(await conn.fetchrow(MARKS))  # type: ignore[assignment]

    async def expect(
        self,
        what: str,
        *,
        history: list[History] | None = None,
        events: list[Event] | None = None,
        audits: list[Audit] | None = None,
    ) -> None:
        """Exactly these rows since the last mark (history as (action, status, reason_code,
        reason, actor) of one booking; events as (type, booking_id, cause); audit rows as
        (role, action, object_type, object_id, fields)); then mark again."""
        provider, force = self.world.provider_id, self.world.force
        async with self.db.acquire() as conn:
            got_history = await conn.fetch(HISTORY, self.marks[0], provider)
            got_events = await conn.fetch(EVENTS, self.marks[1], provider, force)
            got_audits = await conn.fetch(AUDITS, self.marks[2], provider, force)
        assert [tuple(r) for r in got_history] == (history or []), what
        assert [(r["type"], r["booking_id"], r["cause"]) for r in got_events] == (events or []), (
            what
        )
        assert [
            (r["role"], r["action"], r["object_type"], r["object_id"], list(r["fields"]))
            for r in got_audits
        ] == (audits or []), what
        await self.mark()

    # --- steps ------------------------------------------------------------------------------

    async def ok(self, reply: Reply, status: int = 200) -> dict[str, Any]:
        assert reply.status == status, reply.body
        body: dict[str, Any] = reply.body if reply.body is not None else {}
        return body

    async def hold(self, site_id: str, start: datetime, **overrides: Any) -> dict[str, Any]:
        body = booking_body(site_id, start, 24, **overrides)
        booking = await self.ok(
            await self.world.api.post("/v1/bookings", body, key=self.world.officer), 201
        )
        bid = booking["id"]
        fields = sorted([*HOLD_FIELDS, "notes"]) if body.get("notes") else HOLD_FIELDS
        await self.expect(
            "hold",
            history=[("hold", "held", None, None, self.officer)],
            events=[
                ("booking.held", bid, None),
                ("site.availability_changed", None, "booking_held"),
            ],
            audits=[
                ("officer", "hold", "booking", bid, fields),
                ("officer", "read", "booking", bid, shown(booking)),
            ],
        )
        return booking

    async def act(
        self,
        booking: dict[str, Any],
        action: str,
        *,
        by: str,
        status: str,
        event: str,
        fields: list[str],
        cause: str | None = None,
        reason: str | None = None,
        reason_code: str | None = None,
        recorded_reason: str | None = None,
        alerted: bool = False,
        **body: Any,
    ) -> dict[str, Any]:
        """One lifecycle action by `by` (officer or provider) and exactly its records."""
        key = self.world.officer if by == "officer" else self.world.provider
        if reason is not None:
            body["reason"] = reason
        if reason_code is not None:
            body["reason_code"] = reason_code
        bid = booking["id"]
        answer = await self.ok(
            await self.world.api.post(f"/v1/bookings/{bid}/{action}", body or None, key=key)
        )
        assert answer["status"] == status
        actor = self.officer if by == "officer" else f"provider:{self.world.provider_id}"
        # A disclosure without placement is alerted first (SPEC section 2, "alert").
        events: list[Event] = [("security.alert", None, None)] if alerted else []
        events.append((event, bid, None))
        if cause is not None:
            events.append(("site.availability_changed", None, cause))
        await self.expect(
            action,
            history=[(action, status, reason_code, recorded_reason or reason, actor)],
            events=events,
            audits=[
                (by, action, "booking", bid, fields),
                (by, "read", "booking", bid, shown(answer)),
            ],
        )
        return answer


@pytest.fixture
async def walk(world: World, db: Pool, clock: ManualClock) -> Walk:
    walk = Walk(world, db, clock)
    await walk.mark()
    return walk


# --- capacity -------------------------------------------------------------------------------


async def test_every_capacity_change_records_its_audit_row_and_only_the_events_a_search_sees(
    walk: Walk,
) -> None:
    w = walk.world
    api, key = w.api, w.provider
    site = await walk.ok(await api.post("/v1/sites", site_body(), key=key), 201)
    sid = site["id"]
    await walk.expect("site created", audits=[("provider", "create", "site", sid, SITE_FIELDS)])

    await walk.ok(await api.patch(f"/v1/sites/{sid}", {"name": unique("Renamed")}, key=key))
    await walk.expect(
        "site renamed",
        events=[("site.availability_changed", None, "site_changed")],
        audits=[("provider", "update", "site", sid, ["name"])],
    )
    await walk.ok(
        await api.patch(
            f"/v1/sites/{sid}",
            {"phone": "+44 113 496 0777", "status": site["status"]},
            key=key,
        )
    )
    await walk.expect(
        "site phone changed, status given unchanged",
        audits=[("provider", "update", "site", sid, ["phone"])],
    )
    await walk.ok(await api.patch(f"/v1/sites/{sid}", {"status": "paused"}, key=key))
    await walk.expect(
        "site paused",
        events=[("site.availability_changed", None, "site_changed")],
        audits=[("provider", "update", "site", sid, ["status"])],
    )
    await walk.ok(await api.post(f"/v1/sites/{sid}/confirm-capacity", None, key=key))
    await walk.expect(
        "capacity confirmed",
        audits=[("provider", "update", "site", sid, ["capacity_confirmed_at"])],
    )

    beds = f"/v1/sites/{sid}/beds"
    bed = await walk.ok(await api.post(beds, bed_body(), key=key), 201)
    await walk.expect(
        "bed added",
        events=[("site.availability_changed", None, "bed_added")],
        audits=[("provider", "create", "bed", bed["id"], BED_FIELDS)],
    )
    await walk.ok(await api.patch(f"{beds}/{bed['id']}", {"label": unique("Room")}, key=key))
    await walk.expect(
        "bed relabelled", audits=[("provider", "update", "bed", bed["id"], ["label"])]
    )
    await walk.ok(
        await api.patch(f"{beds}/{bed['id']}", {"in_service": False, "max_dependants": 0}, key=key)
    )
    await walk.expect(
        "bed out of service (dependants given unchanged)",
        events=[("site.availability_changed", None, "bed_changed")],
        audits=[("provider", "update", "bed", bed["id"], ["in_service"])],
    )

    blocks = f"/v1/sites/{sid}/blocks"
    window = {"start": "2031-05-01T00:00:00Z", "end": "2031-05-03T00:00:00Z"}
    block = await walk.ok(
        await api.post(blocks, {"bed_id": bed["id"], **window, "reason": "repairs"}, key=key),
        201,
    )
    await walk.expect(
        "block added",
        events=[("site.availability_changed", None, "block_added")],
        audits=[("provider", "create", "block", block["id"], BLOCK_FIELDS)],
    )
    await walk.ok(await api.delete(f"{blocks}/{block['id']}", key=key), 204)
    await walk.expect(
        "block removed",
        events=[("site.availability_changed", None, "block_removed")],
        audits=[("provider", "delete", "block", block["id"], [])],
    )
    await walk.ok(await api.delete(f"{beds}/{bed['id']}", key=key), 204)
    await walk.expect(
        "bed removed",
        events=[("site.availability_changed", None, "bed_removed")],
        audits=[("provider", "delete", "bed", bed["id"], [])],
    )


# --- the booking lifecycle ------------------------------------------------------------------


async def _site(walk: Walk, beds: int = 1, **overrides: Any) -> str:
    site = await walk.world.site(**overrides)
    for _ in range(beds):
        await walk.world.bed(site["id"])
    await walk.mark()
    return str(site["id"])


async def test_an_instant_stay_from_hold_to_feedback(walk: Walk) -> None:
    sid = await _site(walk, booking_mode="instant")
    start = walk.clock.now()
    booking = await walk.hold(sid, start, notes=unique("NOTE"))
    await walk.act(
        booking,
        "confirm",
        by="officer",
        status="confirmed",
        event="booking.confirmed",
        fields=["status"],
    )
    new_end = start + timedelta(hours=36)
    await walk.act(
        booking,
        "extend",
        by="officer",
        status="confirmed",
        event="booking.extended",
        cause="booking_extended",
        fields=["end"],
        recorded_reason=f"extended to {new_end.isoformat()}",
        end=_at(new_end),
    )
    walk.clock.advance(minutes=30)
    await walk.act(
        booking,
        "check-in",
        by="provider",
        status="arrived",
        event="booking.arrived",
        fields=["checked_in_at", "status"],
    )
    walk.clock.advance(hours=10)
    await walk.act(
        booking,
        "check-out",
        by="provider",
        status="departed",
        event="booking.departed",
        cause="booking_released",
        fields=["checked_out_at", "status"],
        reason="moved on",
    )

    answers = {"consent": True, "felt_safe": 4, "needs_met": "partly", "what_would_help": "x"}
    bid = booking["id"]
    answer = await walk.ok(
        await walk.world.api.post(f"/v1/bookings/{bid}/feedback", answers, key=walk.world.provider),
        201,
    )
    await walk.expect(
        "feedback",
        audits=[
            ("provider", "create", "booking", bid, sorted(f"feedback.{n}" for n in answers)),
            ("provider", "read", "booking", bid, shown(answer)),
        ],
    )


async def test_an_early_arrival_moves_the_start_and_takes_more_bed_time(walk: Walk) -> None:
    sid = await _site(walk, booking_mode="instant")
    start = walk.clock.now() + timedelta(hours=2)
    booking = await walk.hold(sid, start)
    await walk.act(
        booking,
        "confirm",
        by="officer",
        status="confirmed",
        event="booking.confirmed",
        fields=["status"],
    )
    await walk.act(
        booking,
        "check-in",
        by="provider",
        status="arrived",
        event="booking.arrived",
        cause="booking_extended",
        fields=["checked_in_at", "start", "status"],
        recorded_reason=f"arrived early; the stay starts at {walk.clock.now().isoformat()}",
    )


async def test_a_request_site_accepts_declines_and_records_a_no_show(walk: Walk) -> None:
    sid = await _site(walk, beds=2, booking_mode="request")
    start = walk.clock.now()
    accepted = await walk.hold(sid, start)
    declined = await walk.hold(sid, start)
    for booking in (accepted, declined):
        await walk.act(
            booking,
            "confirm",
            by="officer",
            status="pending",
            event="booking.pending",
            fields=["respond_by", "status"],
        )
    await walk.act(
        accepted,
        "accept",
        by="provider",
        status="confirmed",
        event="booking.confirmed",
        fields=["status"],
    )
    await walk.act(
        declined,
        "decline",
        by="provider",
        status="declined",
        event="booking.declined",
        cause="booking_released",
        fields=["status"],
        reason_code="risk_assessment",
    )
    walk.clock.advance(hours=2, seconds=1)
    await walk.act(
        accepted,
        "no-show",
        by="provider",
        status="no_show",
        event="booking.no_show",
        cause="booking_released",
        fields=["status"],
        reason_code="person_did_not_arrive",
    )


@pytest.mark.parametrize("by", ["officer", "provider"])
async def test_a_cancel_from_each_state_it_is_allowed_in(walk: Walk, by: str) -> None:
    instant = await _site(walk, beds=2, booking_mode="instant")
    request = await _site(walk, beds=1, booking_mode="request")
    start = walk.clock.now()
    held = await walk.hold(instant, start)
    confirmed = await walk.hold(instant, start)
    pending = await walk.hold(request, start)
    await walk.act(
        confirmed,
        "confirm",
        by="officer",
        status="confirmed",
        event="booking.confirmed",
        fields=["status"],
    )
    await walk.act(
        pending,
        "confirm",
        by="officer",
        status="pending",
        event="booking.pending",
        fields=["respond_by", "status"],
    )
    for booking in (held, confirmed, pending):
        await walk.act(
            booking,
            "cancel",
            by=by,
            status="cancelled",
            event="booking.cancelled",
            cause="booking_released",
            fields=["status"],
            reason_code="transport_failed",
            # Its site's address was shown to the officer when it was confirmed.
            alerted=booking is confirmed,
        )


async def test_the_expiry_job_writes_off_holds_and_requests_as_the_service(
    walk: Walk,
) -> None:
    instant = await _site(walk, booking_mode="instant")
    request = await _site(walk, booking_mode="request")
    start = walk.clock.now()
    held = await walk.hold(instant, start)
    pending = await walk.hold(request, start)
    await walk.act(
        pending,
        "confirm",
        by="officer",
        status="pending",
        event="booking.pending",
        fields=["respond_by", "status"],
    )
    walk.clock.advance(minutes=31)
    assert await sweep_once(units_of(walk.db, walk.clock)) >= 2
    history: list[History] = []
    events: list[Event] = []
    audits: list[Audit] = []
    # The sweep writes off in id order (each booking's rows together).
    for booking, why in sorted(
        [
            (held, "hold not confirmed before it expired"),
            (pending, "provider did not respond in time"),
        ],
        key=lambda pair: str(pair[0]["id"]),
    ):
        bid = booking["id"]
        history.append(("expire", "expired", None, why, "system"))
        events += [
            ("booking.expired", bid, None),
            ("site.availability_changed", None, "booking_released"),
        ]
        audits.append(("system", "expire", "booking", bid, ["status"]))
    await walk.expect("expired by the job", history=history, events=events, audits=audits)
