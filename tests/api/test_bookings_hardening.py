"""Bookings hardening: an extend names only the caller's own claims, and re-checks the bed; a
stay must end in the future; an idempotent replay follows today's disclosure rules."""

from __future__ import annotations

from datetime import datetime, timedelta

from tests.support.clock import ManualClock
from tests.support.world import World, booking_body, new_key, unique


def _at(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


async def _other_force_officer(world: World) -> str:
    code = unique("f")
    reply = await world.api.post("/v1/forces", {"code": code, "name": code}, key=world.admin)
    assert reply.status == 201, reply.body
    return await new_key(world.api, world.admin, role="officer", force=code)


async def test_extend_conflict_does_not_reveal_another_forces_booking(
    world: World, clock: ManualClock
) -> None:
    site = await world.site(max_stay_hours=72)
    await world.bed(site["id"])
    start = clock.now()
    mine = await world.book(site["id"], start, hours=24)
    await world.act(mine["id"], "confirm")
    stranger = await _other_force_officer(world)
    theirs = await world.book(site["id"], start + timedelta(hours=30), hours=10, key=stranger)
    await world.act(theirs["id"], "confirm", key=stranger)

    clash = await world.api.post(
        f"/v1/bookings/{mine['id']}/extend",
        {"end": _at(start + timedelta(hours=36))},
        key=world.officer,
    )
    assert clash.status == 409 and clash.problem_type == "bed-unavailable"
    assert "conflict" not in clash.body
    text = clash.raw.decode()
    assert theirs["id"] not in text
    assert "confirmed" not in text and theirs["start"][:16] not in text
    assert theirs["end"][:16] not in text


async def test_extend_conflict_with_a_providers_block_is_not_named_to_an_officer(
    world: World, clock: ManualClock
) -> None:
    site = await world.site(max_stay_hours=72)
    bed = await world.bed(site["id"])
    start = clock.now()
    mine = await world.book(site["id"], start, hours=24)
    await world.act(mine["id"], "confirm")
    block = await world.api.post(
        f"/v1/sites/{site['id']}/blocks",
        {
            "bed_id": bed["id"],
            "start": _at(start + timedelta(hours=30)),
            "end": _at(start + timedelta(hours=40)),
            "reason": "boiler repair",
        },
        key=world.provider,
    )
    assert block.status == 201, block.body
    clash = await world.api.post(
        f"/v1/bookings/{mine['id']}/extend",
        {"end": _at(start + timedelta(hours=36))},
        key=world.officer,
    )
    assert clash.status == 409 and clash.problem_type == "bed-unavailable"
    assert "conflict" not in clash.body and block.body["id"] not in clash.raw.decode()


async def test_extend_still_names_the_callers_own_forces_booking(
    world: World, clock: ManualClock
) -> None:
    site = await world.site(max_stay_hours=72)
    await world.bed(site["id"])
    start = clock.now()
    mine = await world.book(site["id"], start, hours=24)
    await world.act(mine["id"], "confirm")
    colleague = await new_key(world.api, world.admin, role="officer", force=world.force)
    next_guest = await world.book(site["id"], start + timedelta(hours=30), hours=10, key=colleague)
    clash = await world.api.post(
        f"/v1/bookings/{mine['id']}/extend",
        {"end": _at(start + timedelta(hours=36))},
        key=world.officer,
    )
    assert clash.status == 409 and clash.body["conflict"]["id"] == next_guest["id"]


async def test_a_stay_that_has_already_ended_is_refused(world: World, clock: ManualClock) -> None:
    site = await world.site()
    await world.bed(site["id"])
    now = clock.now()
    body = booking_body(site["id"], now - timedelta(minutes=14))
    body["end"] = _at(now - timedelta(minutes=1))
    held = await world.api.post("/v1/bookings", body, key=world.officer)
    assert held.status == 400 and held.field_names() == {"end"}, held.body
    body["end"] = _at(now)
    at_now = await world.api.post("/v1/bookings", body, key=world.officer)
    assert at_now.status == 400 and at_now.field_names() == {"end"}
    search = await world.api.get(
        "/v1/availability",
        key=world.officer,
        params={"start": now - timedelta(minutes=14), "end": now - timedelta(minutes=1)},
    )
    assert search.status == 400 and search.field_names() == {"end"}
    # A stay that started a little ago (clock skew) and ends later is still fine.
    body["end"] = _at(now + timedelta(hours=2))
    assert (await world.api.post("/v1/bookings", body, key=world.officer)).status == 201


async def test_extend_refuses_an_end_in_the_past(world: World, clock: ManualClock) -> None:
    site = await world.site(max_stay_hours=72)
    await world.bed(site["id"])
    start = clock.now()
    booking = await world.book(site["id"], start, hours=2)
    await world.act(booking["id"], "confirm")
    await world.act(booking["id"], "check-in", key=world.provider)
    clock.advance(hours=5)
    late = await world.api.post(
        f"/v1/bookings/{booking['id']}/extend",
        {"end": _at(start + timedelta(hours=3))},
        key=world.officer,
    )
    assert late.status == 400 and late.field_names() == {"end"}, late.body


async def test_extend_on_a_bed_taken_out_of_service_is_409(
    world: World, clock: ManualClock
) -> None:
    site = await world.site(max_stay_hours=72)
    bed = await world.bed(site["id"])
    start = clock.now()
    booking = await world.book(site["id"], start, hours=24)
    await world.act(booking["id"], "confirm")
    off = await world.api.patch(
        f"/v1/sites/{site['id']}/beds/{bed['id']}", {"in_service": False}, key=world.provider
    )
    assert off.status == 200, off.body
    longer = await world.api.post(
        f"/v1/bookings/{booking['id']}/extend",
        {"end": _at(start + timedelta(hours=30))},
        key=world.officer,
    )
    assert longer.status == 409 and longer.problem_type == "bed-unavailable", longer.body
    after = await world.api.get(f"/v1/bookings/{booking['id']}", key=world.officer)
    assert after.body["end"] == booking["end"]


async def test_replayed_confirm_does_not_show_the_address_after_cancel(
    world: World, clock: ManualClock
) -> None:
    site = await world.site()
    await world.bed(site["id"])
    booking = await world.book(site["id"], clock.now())
    headers = {"Idempotency-Key": unique("confirm")}
    path = f"/v1/bookings/{booking['id']}/confirm"
    first = await world.api.post(path, None, key=world.officer, headers=headers)
    assert first.status == 200 and first.body["site"]["address"].startswith("1 Example Street")
    await world.act(booking["id"], "cancel", reason="found family")
    again = await world.api.post(path, None, key=world.officer, headers=headers)
    assert again.status == 200 and again.headers["Idempotent-Replayed"] == "true"
    assert again.body["id"] == booking["id"]
    assert "address" not in again.body["site"] and "phone" not in again.body["site"]
    assert "1 Example Street" not in again.raw.decode()


async def test_replayed_hold_is_the_booking_as_the_caller_may_see_it_now(
    world: World, clock: ManualClock
) -> None:
    site = await world.site()
    await world.bed(site["id"])
    body = booking_body(site["id"], clock.now())
    headers = {"Idempotency-Key": unique("hold")}
    first = await world.api.post("/v1/bookings", body, key=world.officer, headers=headers)
    again = await world.api.post("/v1/bookings", body, key=world.officer, headers=headers)
    assert first.status == again.status == 201 and again.body == first.body
    assert again.headers["Location"] == first.headers["Location"]
    await world.act(first.body["id"], "confirm")
    await world.act(first.body["id"], "cancel", reason="gone")
    late = await world.api.post("/v1/bookings", body, key=world.officer, headers=headers)
    assert late.status == 201 and late.body["id"] == first.body["id"]
    assert late.body["status"] == "cancelled" and "address" not in late.body["site"]
