"""Site events (issue 8 item 5): every change that alters what an availability search could
return emits exactly one `site.availability_changed` for its site, in the same transaction;
a change that does not (a site's phone or address, a confirm) emits none. The event names the
site and the cause, never where the site is or how to reach it."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import asyncpg

from service.db import Pool
from service.jobs import sweep_once
from tests.support.api import Reply
from tests.support.clock import ManualClock
from tests.support.units import units_of
from tests.support.world import World

SITE_EVENTS = """
SELECT id, type, site_id, data, occurred_at
FROM event
WHERE type = 'site.availability_changed' AND site_id = $1::uuid
ORDER BY id
"""
# Where the site is and how to reach it: never in an event.
HIDDEN_KEYS = frozenset({"address", "location", "lat", "lon", "phone"})


def _at(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def _parse(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))


@dataclass
class SiteEvents:
    """The site's availability events, checked one change at a time."""

    world: World
    db: Pool
    clock: ManualClock
    site: dict[str, Any]
    seen: int = 0
    causes: list[str] = field(default_factory=list)

    @property
    def site_id(self) -> str:
        return str(self.site["id"])

    async def rows(self) -> list[asyncpg.Record]:
        async with self.db.acquire() as conn:
            return list(await conn.fetch(SITE_EVENTS, self.site_id))

    async def start(self) -> None:
        self.seen = len(await self.rows())

    async def expect(self, cause: str | None, *, at: datetime | None = None) -> None:
        """Since the last check: exactly one event with this cause, or none."""
        rows = await self.rows()
        new = rows[self.seen :]
        self.seen = len(rows)
        if cause is None:
            assert new == [], [dict(r) for r in new]
            return
        assert len(new) == 1, [dict(r) for r in new]
        (event,) = new
        data = event["data"] if isinstance(event["data"], dict) else json.loads(event["data"])
        assert data["site_id"] == self.site_id
        assert data["cause"] == cause, data
        assert not HIDDEN_KEYS & set(data), data
        text = json.dumps(data)
        for secret in (self.site["address"], self.site["phone"], "53.7997", "-1.5492"):
            assert secret not in text, data
        assert event["occurred_at"] == (at or self.clock.now())
        self.causes.append(cause)

    async def patch_site(self, body: dict[str, Any]) -> Reply:
        reply = await self.world.api.patch(
            f"/v1/sites/{self.site_id}", body, key=self.world.provider
        )
        assert reply.status == 200, reply.body
        self.site = reply.body
        return reply

    async def act(self, booking_id: str, action: str, key: str, **body: Any) -> dict[str, Any]:
        return await self.world.act(booking_id, action, key=key, **body)


async def _events(world: World, db: Pool, clock: ManualClock, **site: Any) -> SiteEvents:
    events = SiteEvents(world, db, clock, await world.site(**site))
    await events.start()
    return events


async def test_site_changes_that_alter_availability_emit_one_event_each(
    world: World, db: Pool, clock: ManualClock
) -> None:
    e = await _events(world, db, clock)
    await e.patch_site({"status": "paused"})
    await e.expect("site_changed")
    await e.patch_site({"status": "active"})
    await e.expect("site_changed")
    await e.patch_site({"genders_accepted": ["female", "non_binary"]})
    await e.expect("site_changed")
    await e.patch_site({"booking_mode": "request"})
    await e.expect("site_changed")
    await e.patch_site({"max_stay_hours": 48})
    await e.expect("site_changed")
    # One change of several fields is one event, not one per field.
    await e.patch_site({"status": "closed", "booking_mode": "instant", "max_stay_hours": 24})
    await e.expect("site_changed")
    assert e.causes == ["site_changed"] * 6


async def test_a_sites_phone_or_address_changes_no_availability(
    world: World, db: Pool, clock: ManualClock
) -> None:
    e = await _events(world, db, clock)
    before = e.site["version"]
    phone = await e.patch_site({"phone": "+44 113 496 0999"})
    assert phone.body["phone"] == "+44 113 496 0999"
    await e.expect(None)
    address = await e.patch_site({"address": "2 Other Street, Leeds LS2 2BB"})
    assert address.body["address"] == "2 Other Street, Leeds LS2 2BB"
    await e.expect(None)
    both = await e.patch_site({"phone": "+44 113 496 0998", "address": "3 Third Street, Leeds"})
    assert both.body["version"] == before + 3
    await e.expect(None)


async def test_beds_and_blocks_emit_one_event_each(
    world: World, db: Pool, clock: ManualClock
) -> None:
    e = await _events(world, db, clock)
    sid = e.site_id
    bed = await world.bed(sid)
    await e.expect("bed_added")
    spare = await world.bed(sid)
    await e.expect("bed_added")

    path = f"/v1/sites/{sid}/beds/{bed['id']}"
    out = await world.api.patch(path, {"in_service": False}, key=world.provider)
    assert out.status == 200 and out.body["in_service"] is False, out.body
    await e.expect("bed_changed")
    back = await world.api.patch(path, {"in_service": True}, key=world.provider)
    assert back.status == 200 and back.body["in_service"] is True, back.body
    await e.expect("bed_changed")

    gone = await world.api.delete(f"/v1/sites/{sid}/beds/{spare['id']}", key=world.provider)
    assert gone.status == 204, gone.body
    await e.expect("bed_removed")

    start = clock.now() + timedelta(days=2)
    block = await world.api.post(
        f"/v1/sites/{sid}/blocks",
        {
            "bed_id": bed["id"],
            "start": _at(start),
            "end": _at(start + timedelta(hours=6)),
            "reason": "deep clean",
        },
        key=world.provider,
    )
    assert block.status == 201, block.body
    await e.expect("block_added")
    removed = await world.api.delete(
        f"/v1/sites/{sid}/blocks/{block.body['id']}", key=world.provider
    )
    assert removed.status == 204, removed.body
    await e.expect("block_removed")
    assert e.causes == [
        "bed_added",
        "bed_added",
        "bed_changed",
        "bed_changed",
        "bed_removed",
        "block_added",
        "block_removed",
    ]


async def test_bookings_taking_and_releasing_a_bed_emit_one_event_each(
    world: World, db: Pool, clock: ManualClock
) -> None:
    e = await _events(world, db, clock, booking_mode="instant", max_stay_hours=72)
    await world.bed(e.site_id)
    await e.start()

    # A hold takes the bed; a confirm keeps the same claim; a cancel releases it.
    first = await world.book(e.site_id, clock.now())
    await e.expect("booking_held")
    await e.act(first["id"], "confirm", world.officer)
    await e.expect(None)
    await e.act(first["id"], "cancel", world.officer, reason="released by court")
    await e.expect("booking_released")

    # A hold that lapses is released when the sweep writes it off, dated when it lapsed.
    lapsing = await world.book(e.site_id, clock.now())
    await e.expect("booking_held")
    clock.advance(seconds=901)
    await e.expect(None)  # lapsing is seen at once, but written only by the sweep
    assert await sweep_once(units_of(db, clock)) >= 1
    await e.expect("booking_released", at=_parse(lapsing["hold_expires_at"]))

    # A stay: held, confirmed, extended (takes more time), arrived, departed (releases).
    start = clock.now()
    stay = await world.book(e.site_id, start, hours=24)
    await e.expect("booking_held")
    await e.act(stay["id"], "confirm", world.officer)
    await e.expect(None)
    await e.act(stay["id"], "extend", world.officer, end=_at(start + timedelta(hours=30)))
    await e.expect("booking_extended")
    await e.act(stay["id"], "check-in", world.provider)
    await e.expect(None)
    clock.advance(hours=5)
    await e.act(stay["id"], "check-out", world.provider)
    await e.expect("booking_released")
    assert e.causes == [
        "booking_held",
        "booking_released",
        "booking_held",
        "booking_released",
        "booking_held",
        "booking_extended",
        "booking_released",
    ]


async def test_request_answers_and_no_shows(world: World, db: Pool, clock: ManualClock) -> None:
    e = await _events(world, db, clock, booking_mode="request")
    await world.bed(e.site_id)
    await world.bed(e.site_id)
    await e.start()
    start = clock.now()
    declined = await world.book(e.site_id, start)
    await e.expect("booking_held")
    await e.act(declined["id"], "confirm", world.officer)
    await e.expect(None)  # pending keeps the claim
    await e.act(declined["id"], "decline", world.provider, reason="no staff")
    await e.expect("booking_released")

    accepted = await world.book(e.site_id, start)
    await e.expect("booking_held")
    await e.act(accepted["id"], "confirm", world.officer)
    await e.act(accepted["id"], "accept", world.provider)
    await e.expect(None)
    clock.advance(hours=2, seconds=1)
    await e.act(accepted["id"], "no-show", world.provider)
    await e.expect("booking_released")


async def test_another_sites_changes_are_not_this_sites_events(
    world: World, db: Pool, clock: ManualClock
) -> None:
    mine = await _events(world, db, clock)
    theirs = await _events(world, db, clock, key=world.other_provider)
    await world.bed(theirs.site_id, key=world.other_provider)
    await theirs.expect("bed_added")
    await mine.expect(None)
