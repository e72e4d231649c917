"""Holds and pending requests expire on time, with or without a request arriving."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any, cast

from service.db import Connection, Pool
from service.jobs import sweep_once
from service.usecases import tx
from service.usecases.expiry import expire_lapsed
from tests.conftest import AppFactory
from tests.support.clock import ManualClock
from tests.support.units import units_of
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
    assert await sweep_once(units_of(db, clock)) >= 1
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
    await sweep_once(units_of(db, clock))
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
    await asyncio.gather(*(sweep_once(units_of(db, clock)) for _ in range(4)))
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


class _Counting:
    """A connection that counts the statements sent through it."""

    def __init__(self, conn: Any) -> None:
        self._conn = conn
        self.statements = 0

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._conn, name)
        if name in ("execute", "executemany", "fetch", "fetchrow", "fetchval"):
            self.statements += 1
        return attr


async def test_a_sweep_batch_writes_its_records_in_one_statement_as_each_booking_alone_would(
    world: World, clock: ManualClock, db: Pool
) -> None:
    """Issue 15 item 1: a batch's history, events and audit rows come from the expiring
    statement's own result (no round trip per booking), and are the rows they always were."""
    site = await world.site()
    for _ in range(4):
        await world.bed(site["id"])
    made = [await world.book(site["id"], clock.now()) for _ in range(4)]
    ids = sorted(b["id"] for b in made)
    clock.advance(seconds=901)
    async with db.acquire() as conn:
        counting = _Counting(conn)
        async with tx.writing(
            cast(Connection, counting), at=clock.now(), who=None, request_id="req-sweep"
        ) as unit:
            assert await expire_lapsed(unit, limit=10_000) >= 4
        assert counting.statements == 1
        transitions = await conn.fetch(
            "SELECT booking_id::text, action, status, at, actor, api_key_id, reason, reason_code"
            " FROM booking_transition WHERE booking_id = ANY($1::uuid[]) AND action = 'expire'"
            " ORDER BY booking_id",
            ids,
        )
        events = await conn.fetch(
            "SELECT type, booking_id::text, site_id::text, force_code, provider_id::text, data,"
            " occurred_at, public_id FROM event"
            " WHERE (booking_id = ANY($1::uuid[]) AND type = 'booking.expired')"
            "    OR (site_id = $2::uuid AND data->>'cause' = 'booking_released')"
            " ORDER BY id",
            ids,
            site["id"],
        )
        audits = await conn.fetch(
            "SELECT object_id, at, api_key_id, role, scope, request_id, fields FROM audit"
            " WHERE object_id = ANY($1::text[]) AND action = 'expire' ORDER BY object_id",
            ids,
        )
    by_id = {b["id"]: b for b in made}
    assert [dict(t) for t in transitions] == [
        {
            "booking_id": i,
            "action": "expire",
            "status": "expired",
            "at": datetime.fromisoformat(by_id[i]["hold_expires_at"]),
            "actor": "system",
            "api_key_id": None,
            "reason": "hold not confirmed before it expired",
            "reason_code": None,
        }
        for i in ids
    ]
    # Per booking, in id order: its own event, then its site's availability change.
    expected: list[dict[str, Any]] = []
    for i in ids:
        lapsed = datetime.fromisoformat(by_id[i]["hold_expires_at"])
        expected.append(
            {
                "type": "booking.expired",
                "booking_id": i,
                "site_id": site["id"],
                "force_code": world.force,
                "provider_id": world.provider_id,
                "data": {
                    "booking_id": i,
                    "status": "expired",
                    "site_id": site["id"],
                    "force": world.force,
                    "bed_id": by_id[i]["bed_id"],
                    "start": by_id[i]["start"],
                    "end": by_id[i]["end"],
                },
                "occurred_at": lapsed,
            }
        )
        expected.append(
            {
                "type": "site.availability_changed",
                "booking_id": None,
                "site_id": site["id"],
                "force_code": None,
                "provider_id": world.provider_id,
                "data": {"site_id": site["id"], "cause": "booking_released"},
                "occurred_at": lapsed,
            }
        )
    got = [{k: v for k, v in dict(e).items() if k != "public_id"} for e in events]
    for row in got:
        row["data"] = _normalised(row["data"])
    for row in expected:
        row["data"] = _normalised(row["data"])
    assert got == expected
    assert len({e["public_id"] for e in events}) == len(events)
    assert [dict(a) for a in audits] == [
        {
            "object_id": i,
            "at": clock.now(),
            "api_key_id": None,
            "role": "system",
            "scope": None,
            "request_id": "req-sweep",
            "fields": ["status"],
        }
        for i in ids
    ]


def _normalised(data: dict[str, Any]) -> dict[str, Any]:
    """Instants compared as instants (the API and jsonb write them differently)."""
    return {k: datetime.fromisoformat(v) if k in ("start", "end") else v for k, v in data.items()}
