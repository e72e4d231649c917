"""Holds and pending requests expire on time, with or without a request arriving."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from service.db import Pool
from service.jobs import sweep_once
from tests.conftest import AppFactory
from tests.support.clock import ManualClock
from tests.support.until import until
from tests.support.world import World, new_key, unique


async def _status_in_db(db: Pool, booking_id: str) -> str:
    async with db.acquire() as conn:
        return str(
            await conn.fetchval("SELECT status FROM allocation WHERE id = $1::uuid", booking_id)
        )


async def test_a_hold_expires_after_its_ttl(world: World, clock: ManualClock, db: Pool) -> None:
    site = await world.site()
    await world.bed(site["id"])
    booking = await world.book(site["id"], clock.now())
    deadline = booking["hold_expires_at"]
    clock.advance(seconds=899)
    assert (await world.api.get(f"/v1/bookings/{booking['id']}", key=world.officer)).body[
        "status"
    ] == "held"
    clock.advance(seconds=1)
    # Callers see it expired at once, before any sweep...
    seen = await world.api.get(f"/v1/bookings/{booking['id']}", key=world.officer)
    assert seen.body["status"] == "expired"
    late = await world.api.post(f"/v1/bookings/{booking['id']}/confirm", None, key=world.officer)
    assert late.status == 409 and late.body["current_status"] == "expired"
    assert await _status_in_db(db, booking["id"]) == "held"
    # ...and the sweep writes it down, dated when it lapsed, by the system.
    assert await sweep_once(db, clock) >= 1
    assert await _status_in_db(db, booking["id"]) == "expired"
    history = (await world.api.get(f"/v1/bookings/{booking['id']}", key=world.officer)).body[
        "history"
    ]
    assert history[-1] == {
        "action": "expire",
        "status": "expired",
        "at": deadline,
        "by": "system",
        "reason_code": None,
        "reason": "hold not confirmed before it expired",
    }
    async with db.acquire() as conn:
        types = await conn.fetch(
            "SELECT type FROM event WHERE booking_id = $1::uuid ORDER BY id", booking["id"]
        )
    assert [t["type"] for t in types] == ["booking.held", "booking.expired"]


async def test_an_unswept_expired_hold_never_blocks_a_new_hold(
    world: World, clock: ManualClock, db: Pool
) -> None:
    site = await world.site()
    bed = await world.bed(site["id"])
    first = await world.book(site["id"], clock.now())
    clock.advance(seconds=901)
    second = await world.book(site["id"], clock.now())
    assert second["bed_id"] == first["bed_id"] == bed["id"]
    # The new hold wrote the lapsed one off in its own transaction.
    assert await _status_in_db(db, first["id"]) == "expired"


async def test_an_unswept_expired_hold_never_blocks_a_block(
    world: World, clock: ManualClock
) -> None:
    site = await world.site()
    bed = await world.bed(site["id"])
    start = clock.now()
    await world.book(site["id"], start)
    clock.advance(seconds=901)
    reply = await world.api.post(
        f"/v1/sites/{site['id']}/blocks",
        {
            "bed_id": bed["id"],
            "start": start.isoformat(),
            "end": (start + timedelta(hours=5)).isoformat(),
            "reason": "deep clean",
        },
        key=world.provider,
    )
    assert reply.status == 201


async def test_a_pending_request_expires_at_respond_by(
    world: World, clock: ManualClock, db: Pool
) -> None:
    site = await world.site(booking_mode="request")
    await world.bed(site["id"])
    booking = await world.book(site["id"], clock.now())
    pending = await world.act(booking["id"], "confirm")
    clock.advance(seconds=1800)
    late = await world.api.post(f"/v1/bookings/{booking['id']}/accept", None, key=world.provider)
    assert late.status == 409 and late.body["current_status"] == "expired"
    await sweep_once(db, clock)
    final = (await world.api.get(f"/v1/bookings/{booking['id']}", key=world.provider)).body
    assert final["status"] == "expired"
    assert final["history"][-1]["at"] == pending["respond_by"]
    assert final["history"][-1]["reason"] == "provider did not respond in time"
    assert (await world.book(site["id"], clock.now()))["bed_id"] == booking["bed_id"]


async def test_concurrent_sweeps_expire_each_booking_once(
    world: World, clock: ManualClock, db: Pool
) -> None:
    site = await world.site()
    for _ in range(12):
        await world.bed(site["id"])
    # Three officers of the force, four holds each: within the cap on live holds per key.
    officers = [world.officer] + [
        await new_key(world.api, world.admin, role="officer", force=world.force) for _ in range(2)
    ]
    made = [await world.book(site["id"], clock.now(), key=officers[i % 3]) for i in range(12)]
    clock.advance(seconds=901)
    await asyncio.gather(*(sweep_once(db, clock) for _ in range(4)))
    async with db.acquire() as conn:
        counts = await conn.fetch(
            "SELECT booking_id, count(*) AS n FROM booking_transition"
            " WHERE action = 'expire' AND booking_id = ANY($1::uuid[]) GROUP BY booking_id",
            [b["id"] for b in made],
        )
    assert len(counts) == 12 and {c["n"] for c in counts} == {1}


async def test_the_background_job_expires_holds_with_no_request(
    world: World, make_api: AppFactory, clock: ManualClock, db: Pool
) -> None:
    await make_api(run_jobs=True, settings_overrides={"sweep_interval_seconds": 0.05})
    site = await world.site()
    await world.bed(site["id"])
    booking = await world.book(site["id"], clock.now())
    clock.advance(seconds=901)

    async def expired() -> bool:
        return await _status_in_db(db, booking["id"]) == "expired"

    await until(expired, what="the expiry job to run")


async def test_a_lapsed_hold_written_off_by_another_forces_hold_is_the_systems_doing(
    world: World, clock: ManualClock, db: Pool
) -> None:
    """Whoever claims the bed next writes the lapsed hold off in its own transaction, but the
    history and the audit name the service, never that other force or its key."""
    site = await world.site()
    await world.bed(site["id"])
    first = await world.book(site["id"], clock.now())
    other_force = unique("f")
    made = await world.api.post(
        "/v1/forces", {"code": other_force, "name": "Other"}, key=world.admin
    )
    assert made.status == 201
    other_officer = await new_key(world.api, world.admin, role="officer", force=other_force)
    clock.advance(seconds=901)
    await world.book(site["id"], clock.now(), key=other_officer)
    history = (await world.api.get(f"/v1/bookings/{first['id']}", key=world.officer)).body[
        "history"
    ]
    assert history[-1]["action"] == "expire"
    assert history[-1]["by"] == "system"
    async with db.acquire() as conn:
        expired = await conn.fetch(
            "SELECT role, api_key_id, scope FROM audit WHERE object_id = $1 AND action = 'expire'",
            first["id"],
        )
        transition = await conn.fetchrow(
            "SELECT actor, api_key_id FROM booking_transition"
            " WHERE booking_id = $1::uuid AND action = 'expire'",
            first["id"],
        )
    assert [dict(r) for r in expired] == [{"role": "system", "api_key_id": None, "scope": None}]
    assert dict(transition) == {"actor": "system", "api_key_id": None}
