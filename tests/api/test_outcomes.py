"""Issue 10: coded reasons on decline, cancel and no-show; when a stay ended; the person's own
feedback, recorded by the provider with consent."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import pytest
import yaml

from service.db import Pool
from service.resources import openapi_path
from service.vocab import ALL_REASON_CODES, CancelReason, DeclineReason, NeedsMet, NoShowReason
from tests.support.clock import ManualClock
from tests.support.units import units_of
from tests.support.world import World, unique


def _at(moment: Any) -> str:
    return str(moment.isoformat().replace("+00:00", "Z"))


async def _transition(db: Pool, booking_id: str, action: str) -> Any:
    async with db.acquire() as conn:
        return await conn.fetchrow(
            "SELECT reason_code, reason FROM booking_transition"
            " WHERE booking_id = $1 AND action = $2",
            uuid.UUID(booking_id),
            action,
        )


async def _ended_at(db: Pool, booking_id: str) -> Any:
    async with db.acquire() as conn:
        return await conn.fetchval(
            "SELECT ended_at FROM allocation WHERE id = $1", uuid.UUID(booking_id)
        )


# --- coded reasons ----------------------------------------------------------------------------


async def _pending(world: World, clock: ManualClock) -> dict[str, Any]:
    site = await world.site(booking_mode="request")
    await world.bed(site["id"])
    booking = await world.book(site["id"], clock.now())
    await world.act(booking["id"], "confirm")
    return booking


@pytest.mark.parametrize("code", sorted(DeclineReason))
async def test_a_decline_carries_its_code_into_history(
    world: World, db: Pool, clock: ManualClock, code: str
) -> None:
    booking = await _pending(world, clock)
    body: dict[str, Any] = {"reason_code": code}
    if code == "other":
        body["reason"] = "no interpreter for the person's language tonight"
    declined = await world.act(booking["id"], "decline", key=world.provider, **body)
    last = declined["history"][-1]
    assert (last["action"], last["reason_code"], last["reason"]) == (
        "decline",
        code,
        body.get("reason"),
    )
    stored = await _transition(db, booking["id"], "decline")
    assert stored["reason_code"] == code
    assert declined["history"][0]["reason_code"] is None  # the hold carries no code


async def test_other_needs_a_reason_and_a_code_from_another_list_is_refused(
    world: World, clock: ManualClock
) -> None:
    booking = await _pending(world, clock)
    path = f"/v1/bookings/{booking['id']}/decline"
    bare_other = await world.api.post(path, {"reason_code": "other"}, key=world.provider)
    assert bare_other.status == 400 and bare_other.field_names() == {"reason"}
    wrong_list = await world.api.post(path, {"reason_code": "booked_in_error"}, key=world.provider)
    assert wrong_list.status == 400 and "reason_code" in wrong_list.field_names()
    null_code = await world.api.post(path, {"reason_code": None, "reason": "x"}, key=world.provider)
    assert null_code.status == 400
    # Confirm, accept, check-in and check-out take no code.
    site = await world.site()
    await world.bed(site["id"])
    held = await world.book(site["id"], clock.now())
    coded_confirm = await world.api.post(
        f"/v1/bookings/{held['id']}/confirm", {"reason_code": "other"}, key=world.officer
    )
    assert coded_confirm.status == 400 and "reason_code" in coded_confirm.field_names()
    # Still pending: nothing was recorded by the refusals.
    shown = await world.api.get(f"/v1/bookings/{booking['id']}", key=world.provider)
    assert shown.body["status"] == "pending"


async def test_a_body_without_a_code_is_read_as_other_so_older_clients_keep_working(
    world: World, db: Pool, clock: ManualClock
) -> None:
    site = await world.site()
    await world.bed(site["id"])
    booking = await world.book(site["id"], clock.now())
    cancelled = await world.act(booking["id"], "cancel", reason="released by court")
    assert cancelled["history"][-1]["reason_code"] == "other"
    assert cancelled["history"][-1]["reason"] == "released by court"
    assert (await _transition(db, booking["id"], "cancel"))["reason_code"] == "other"


@pytest.mark.parametrize("code", sorted(CancelReason))
async def test_a_cancellation_by_either_side_carries_its_code(
    world: World, clock: ManualClock, code: str
) -> None:
    site = await world.site()
    await world.bed(site["id"])
    booking = await world.book(site["id"], clock.now())
    await world.act(booking["id"], "confirm")
    body: dict[str, Any] = {"reason_code": code}
    if code == "other":
        body["reason"] = "court bail conditions changed"
    key = world.provider if code == "transport_failed" else world.officer
    cancelled = await world.act(booking["id"], "cancel", key=key, **body)
    assert cancelled["status"] == "cancelled"
    assert cancelled["history"][-1]["reason_code"] == code


@pytest.mark.parametrize("code", [None, *sorted(NoShowReason)])
async def test_a_no_show_carries_its_code_or_the_default(
    world: World, db: Pool, clock: ManualClock, code: str | None
) -> None:
    site = await world.site()
    await world.bed(site["id"])
    start = clock.now()
    booking = await world.book(site["id"], start)
    await world.act(booking["id"], "confirm")
    clock.set(start + timedelta(hours=2))
    body: dict[str, Any] = {} if code is None else {"reason_code": code}
    if code == "other":
        body["reason"] = "taken to hospital"
    gone = await world.act(booking["id"], "no-show", key=world.provider, **body)
    assert gone["history"][-1]["reason_code"] == (code or "person_did_not_arrive")
    assert await _ended_at(db, booking["id"]) == clock.now()


# --- when a stay ended --------------------------------------------------------------------------


async def test_every_step_into_a_final_state_dates_the_end_of_the_stay(
    world: World, db: Pool, clock: ManualClock
) -> None:
    site = await world.site()
    await world.bed(site["id"])
    await world.bed(site["id"])
    start = clock.now()
    stay = await world.book(site["id"], start)
    lapsing = await world.book(site["id"], start)
    await world.act(stay["id"], "confirm")
    assert await _ended_at(db, stay["id"]) is None
    clock.advance(minutes=5)
    await world.act(stay["id"], "check-in", key=world.provider)
    assert await _ended_at(db, stay["id"]) is None
    clock.advance(hours=10)
    await world.act(stay["id"], "check-out", key=world.provider)
    assert await _ended_at(db, stay["id"]) == clock.now()

    # An expiry is dated when the hold lapsed, not when the sweep came by.
    from service.jobs import sweep_once

    await sweep_once(units_of(db, clock))
    assert await _ended_at(db, lapsing["id"]) == start + timedelta(seconds=900)


async def test_the_early_check_in_conflict_names_the_claim_in_the_way(
    world: World, clock: ManualClock
) -> None:
    site = await world.site(max_stay_hours=24)
    await world.bed(site["id"])
    first = await world.book(site["id"], clock.now() + timedelta(hours=1), hours=2)
    second = await world.book(site["id"], clock.now() + timedelta(hours=3), hours=20)
    for booking in (first, second):
        await world.act(booking["id"], "confirm")
    blocked = await world.api.post(
        f"/v1/bookings/{second['id']}/check-in", None, key=world.provider
    )
    assert blocked.status == 409 and blocked.problem_type == "bed-unavailable"
    assert blocked.body["conflict"]["id"] == first["id"]


# --- feedback -------------------------------------------------------------------------------


ANSWERS = {
    "consent": True,
    "felt_safe": 4,
    "treated_with_respect": 5,
    "needs_met": "partly",
    "language_used": "pl",
}


async def _departed(world: World, clock: ManualClock, **overrides: Any) -> dict[str, Any]:
    site = await world.site()
    await world.bed(site["id"])
    booking = await world.book(site["id"], clock.now(), **overrides)
    await world.act(booking["id"], "confirm")
    await world.act(booking["id"], "check-in", key=world.provider)
    clock.advance(hours=8)
    await world.act(booking["id"], "check-out", key=world.provider)
    return booking


async def _audit(db: Pool, booking_id: str) -> list[Any]:
    async with db.acquire() as conn:
        return list(
            await conn.fetch(
                "SELECT role, action, fields FROM audit"
                " WHERE object_type = 'booking' AND object_id = $1 ORDER BY id",
                booking_id,
            )
        )


async def test_the_provider_records_the_persons_answers_once(
    world: World, db: Pool, clock: ManualClock
) -> None:
    booking = await _departed(world, clock)
    words = unique("a worker who speaks Polish at night")
    path = f"/v1/bookings/{booking['id']}/feedback"
    reply = await world.api.post(path, {**ANSWERS, "what_would_help": words}, key=world.provider)
    assert reply.status == 201, reply.body
    assert reply.body["feedback"] == {
        **ANSWERS,
        "what_would_help": words,
        "created_at": _at(clock.now()),
    }
    again = await world.api.post(path, {"consent": True}, key=world.provider)
    assert again.status == 409 and again.problem_type == "feedback-exists"

    created = [r for r in await _audit(db, booking["id"]) if r["action"] == "create"]
    assert [(r["role"], sorted(r["fields"])) for r in created] == [
        (
            "provider",
            sorted(f"feedback.{name}" for name in [*ANSWERS, "what_would_help"]),
        )
    ]
    # The person's words are in no event and no audit row.
    async with db.acquire() as conn:
        assert not await conn.fetchval(
            "SELECT count(*) FROM event WHERE data::text LIKE '%' || $1 || '%'", words
        )
        assert not await conn.fetchval(
            "SELECT count(*) FROM audit a WHERE a::text LIKE '%' || $1 || '%'", words
        )


async def test_officers_see_the_coded_answers_never_the_persons_words(
    world: World, db: Pool, clock: ManualClock
) -> None:
    booking = await _departed(world, clock)
    words = unique("somewhere quieter")
    reply = await world.api.post(
        f"/v1/bookings/{booking['id']}/feedback",
        {**ANSWERS, "what_would_help": words},
        key=world.provider,
    )
    assert reply.status == 201
    seen = await world.api.get(f"/v1/bookings/{booking['id']}", key=world.officer)
    assert seen.body["feedback"] == {**ANSWERS, "created_at": reply.body["feedback"]["created_at"]}
    assert words not in seen.raw.decode()
    listed = await world.all_bookings(key=world.officer)
    assert words not in str(listed)
    for key in (world.provider, world.admin):
        shown = await world.api.get(f"/v1/bookings/{booking['id']}", key=key)
        assert shown.body["feedback"]["what_would_help"] == words
    reads = [r for r in await _audit(db, booking["id"]) if r["action"] == "read"]
    by_role = {r["role"]: "feedback.what_would_help" in r["fields"] for r in reads[-3:]}
    assert by_role == {"officer": False, "provider": True, "admin": True}


async def test_feedback_needs_consent_and_answers_in_range(
    world: World, clock: ManualClock
) -> None:
    booking = await _departed(world, clock)
    path = f"/v1/bookings/{booking['id']}/feedback"
    for body, field in [
        ({"felt_safe": 3}, "consent"),
        ({"consent": False, "felt_safe": 3}, "consent"),
        ({"consent": True, "felt_safe": 6}, "felt_safe"),
        ({"consent": True, "treated_with_respect": 0}, "treated_with_respect"),
        ({"consent": True, "needs_met": "mostly"}, "needs_met"),
        ({"consent": True, "language_used": "pol"}, "language_used"),
        ({"consent": True, "what_would_help": "x" * 2001}, "what_would_help"),
        ({"consent": True, "what_would_help": "a\u202eb"}, "what_would_help"),
    ]:
        reply = await world.api.post(path, body, key=world.provider)
        assert reply.status == 400 and field in reply.field_names(), (body, reply.body)
    shown = await world.api.get(f"/v1/bookings/{booking['id']}", key=world.provider)
    assert shown.body["feedback"] is None
    minimal = await world.api.post(path, {"consent": True}, key=world.provider)
    assert minimal.status == 201
    assert minimal.body["feedback"]["felt_safe"] is None
    assert minimal.body["feedback"]["what_would_help"] is None


async def test_only_the_sites_provider_records_feedback(world: World, clock: ManualClock) -> None:
    booking = await _departed(world, clock)
    path = f"/v1/bookings/{booking['id']}/feedback"
    for key in (world.officer, world.admin):
        reply = await world.api.post(path, {"consent": True}, key=key)
        assert reply.status == 403, reply.body
    elsewhere = await world.api.post(path, {"consent": True}, key=world.other_provider)
    assert elsewhere.status == 404
    missing = await world.api.post(
        f"/v1/bookings/{uuid.uuid4()}/feedback", {"consent": True}, key=world.provider
    )
    assert missing.status == 404


async def test_feedback_once_the_person_has_left_or_was_met(
    world: World, clock: ManualClock
) -> None:
    site = await world.site(booking_mode="request")
    for _ in range(4):
        await world.bed(site["id"])
    start = clock.now()
    live, cancelled, declined, absent = [await world.book(site["id"], start) for _ in range(4)]
    for booking in (live, cancelled, declined, absent):
        await world.act(booking["id"], "confirm")
    early = await world.api.post(
        f"/v1/bookings/{live['id']}/feedback", {"consent": True}, key=world.provider
    )
    assert early.status == 409 and early.problem_type == "wrong-state"
    assert early.body["current_status"] == "pending"
    await world.act(
        cancelled["id"], "cancel", key=world.provider, reason_code="person_declined_placement"
    )
    await world.act(declined["id"], "decline", key=world.provider, reason_code="site_full")
    await world.act(absent["id"], "accept", key=world.provider)
    clock.advance(hours=2)
    await world.act(absent["id"], "no-show", key=world.provider)
    for booking in (cancelled, declined, absent):
        reply = await world.api.post(
            f"/v1/bookings/{booking['id']}/feedback",
            {"consent": True, "needs_met": "no"},
            key=world.provider,
        )
        assert reply.status == 201, reply.body


async def test_a_replayed_feedback_answers_the_booking_and_stores_no_words(
    world: World, db: Pool, clock: ManualClock
) -> None:
    booking = await _departed(world, clock)
    words = unique("a phone charger")
    path = f"/v1/bookings/{booking['id']}/feedback"
    body = {"consent": True, "what_would_help": words}
    headers = {"Idempotency-Key": unique("fb")}
    first = await world.api.post(path, body, key=world.provider, headers=headers)
    replay = await world.api.post(path, body, key=world.provider, headers=headers)
    assert first.status == replay.status == 201
    assert replay.headers.get("Idempotent-Replayed") == "true"
    assert replay.body["feedback"] == first.body["feedback"]
    async with db.acquire() as conn:
        stored = await conn.fetch("SELECT response_body FROM idempotency_key")
    assert all(words.encode() not in bytes(r["response_body"] or b"") for r in stored)


def test_the_contract_lists_the_codes_the_service_takes() -> None:
    schemas = yaml.safe_load(openapi_path().read_text(encoding="utf-8"))["components"]["schemas"]
    for name, codes in [
        ("DeclineIn", DeclineReason),
        ("CancelIn", CancelReason),
        ("NoShowIn", NoShowReason),
    ]:
        assert schemas[name]["properties"]["reason_code"]["enum"] == list(codes), name
    assert set(schemas["ReasonCode"]["enum"]) == ALL_REASON_CODES
    assert schemas["FeedbackIn"]["properties"]["needs_met"]["enum"] == [*NeedsMet, None]
