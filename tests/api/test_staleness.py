"""Capacity that is never silently stale (issue 10 item 6): a site its provider has neither
changed nor confirmed for STALE_AFTER_HOURS shows `stale`, ranks after fresh sites of the
same language fit, and is announced once as site.capacity_stale (to its provider and admins);
a confirmation, or any change to its beds, blocks or status, makes it fresh again."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest

from service.db import Pool
from service.domain.stays import Policy
from service.jobs import announce_stale_once
from tests.conftest import AppFactory
from tests.support.clock import ManualClock
from tests.support.geo import Point, next_origin
from tests.support.units import units_of
from tests.support.world import World

STALE_AFTER = timedelta(hours=8)  # the default STALE_AFTER_HOURS


async def announce(db: Pool, clock: ManualClock) -> int:
    """A round of the staleness job, with STALE_AFTER as the policy's."""
    return await announce_stale_once(units_of(db, clock, Policy(stale_after=STALE_AFTER)))


@pytest.fixture
def origin() -> Point:
    return next_origin()


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


async def _site(world: World, at: Point, name: str, **overrides: Any) -> dict[str, Any]:
    site = await world.site(location=at.location(), name=name, **overrides)
    await world.bed(site["id"])
    return site


async def _search(world: World, clock: ManualClock, at: Point, **params: Any) -> list[Any]:
    reply = await world.api.get(
        "/v1/availability",
        key=world.officer,
        params={"end": clock.now() + timedelta(hours=24), **at.near(20), **params},
    )
    assert reply.status == 200, reply.body
    items: list[Any] = reply.body["items"]
    return items


async def _announced(db: Pool, site_id: str) -> list[dict[str, Any]]:
    rows = await db.fetch(
        "SELECT data, occurred_at FROM event WHERE type = 'site.capacity_stale' AND site_id = $1"
        " ORDER BY id",
        site_id,
    )
    return [{"data": r["data"], "occurred_at": r["occurred_at"]} for r in rows]


async def _get(world: World, site_id: str, key: str | None = None) -> dict[str, Any]:
    reply = await world.api.get(f"/v1/sites/{site_id}", key=key or world.provider)
    assert reply.status == 200, reply.body
    site: dict[str, Any] = reply.body
    return site


async def test_a_site_unconfirmed_for_stale_after_hours_is_stale_and_ranks_after_fresh(
    world: World, clock: ManualClock, origin: Point
) -> None:
    # Same place (one cell, one distance), same fit; by name the stale one would come first.
    old = await _site(world, origin, "A old")
    confirmed = clock.now()
    clock.advance(hours=8, seconds=-1)
    new = await _site(world, origin, "B new")
    items = await _search(world, clock, origin)
    assert [(i["name"], i["stale"]) for i in items] == [("A old", False), ("B new", False)]
    clock.advance(seconds=1)  # STALE_AFTER_HOURS since the old site's last change
    items = await _search(world, clock, origin)
    assert [(i["name"], i["stale"]) for i in items] == [("B new", False), ("A old", True)]
    assert _time(items[1]["capacity_confirmed_at"]) == confirmed
    assert items[0]["distance_km"] == items[1]["distance_km"]
    shown = await _get(world, old["id"])
    assert shown["stale"] is True and _time(shown["capacity_confirmed_at"]) == confirmed
    assert (await _get(world, new["id"]))["stale"] is False
    listed = {
        s["id"]: s["stale"] for s in await world.api.all_items("/v1/sites", key=world.provider)
    }
    assert listed[old["id"]] is True and listed[new["id"]] is False
    # Language fit still comes first: a stale site whose staff speak the language leads.
    items = await _search(world, clock, origin, language="en")
    assert [i["name"] for i in items] == ["B new", "A old"]
    speaks = await _site(world, origin, "C speaks", languages=["ro"])
    clock.advance(hours=9)
    await world.api.post(f"/v1/sites/{new['id']}/confirm-capacity", key=world.provider)
    items = await _search(world, clock, origin, language="ro")
    assert [(i["name"], i["stale"]) for i in items] == [
        ("C speaks", True),
        ("B new", False),
        ("A old", True),
    ]
    assert speaks["stale"] is False
    # Holds at a stale site work as anywhere.
    booking = await world.book(old["id"], clock.now())
    assert booking["status"] == "held"


async def test_staleness_is_announced_once_and_a_confirmation_clears_it(
    world: World, db: Pool, clock: ManualClock, origin: Point
) -> None:
    site = await _site(world, origin, "Announced")
    created = clock.now()
    clock.advance(hours=7, minutes=59)
    await announce(db, clock)
    assert await _announced(db, site["id"]) == []
    clock.advance(minutes=1)
    await announce(db, clock)
    await announce(db, clock)
    clock.advance(hours=3)
    await announce(db, clock)
    (first,) = await _announced(db, site["id"])
    assert first["data"]["site_id"] == site["id"]
    assert _time(first["data"]["capacity_confirmed_at"]) == created

    # The provider and admins read it; an officer does not.
    feed = {"types": "site.capacity_stale", "limit": 500}
    mine = await world.api.get("/v1/events", key=world.provider, params=feed)
    assert [e["site_id"] for e in mine.body["items"]] == [site["id"]]
    assert mine.body["items"][0]["data"] == first["data"]
    officers = await world.api.get("/v1/events", key=world.officer, params=feed)
    assert officers.body["items"] == []
    theirs = await world.api.get("/v1/events", key=world.other_provider, params=feed)
    assert site["id"] not in {e["site_id"] for e in theirs.body["items"]}

    # "Still accurate": fresh at once, nothing more announced until it is stale again.
    reply = await world.api.post(f"/v1/sites/{site['id']}/confirm-capacity", key=world.provider)
    assert reply.status == 200, reply.body
    assert reply.body["stale"] is False
    assert _time(reply.body["capacity_confirmed_at"]) == clock.now()
    assert reply.body["version"] == site["version"]
    confirmed = clock.now()
    await announce(db, clock)
    clock.advance(hours=7)
    await announce(db, clock)
    assert len(await _announced(db, site["id"])) == 1
    clock.advance(hours=1)
    await announce(db, clock)
    await announce(db, clock)
    events = await _announced(db, site["id"])
    assert len(events) == 2
    assert _time(events[1]["data"]["capacity_confirmed_at"]) == confirmed
    assert events[1]["occurred_at"] == clock.now()


async def test_changes_to_beds_blocks_and_status_confirm_capacity(
    world: World, db: Pool, clock: ManualClock, origin: Point
) -> None:
    site = await _site(world, origin, "Changing")
    site_id = site["id"]

    async def confirmed_at() -> datetime:
        return _time((await _get(world, site_id))["capacity_confirmed_at"])

    beds = await world.api.all_items(f"/v1/sites/{site_id}/beds", key=world.provider)
    bed_id = beds[0]["id"]
    clock.advance(hours=1)
    await world.bed(site_id, label="Second")
    assert await confirmed_at() == clock.now()
    clock.advance(hours=1)
    reply = await world.api.patch(
        f"/v1/sites/{site_id}/beds/{bed_id}", {"in_service": False}, key=world.provider
    )
    assert reply.status == 200, reply.body
    assert await confirmed_at() == clock.now()
    clock.advance(hours=1)
    block = await world.api.post(
        f"/v1/sites/{site_id}/blocks",
        {
            "bed_id": bed_id,
            "start": (clock.now() + timedelta(days=1)).isoformat(),
            "end": (clock.now() + timedelta(days=2)).isoformat(),
            "reason": "repairs",
        },
        key=world.provider,
    )
    assert block.status == 201, block.body
    assert await confirmed_at() == clock.now()
    clock.advance(hours=1)
    reply = await world.api.delete(
        f"/v1/sites/{site_id}/blocks/{block.body['id']}", key=world.provider
    )
    assert reply.status == 204
    assert await confirmed_at() == clock.now()
    clock.advance(hours=1)
    reply = await world.api.delete(f"/v1/sites/{site_id}/beds/{bed_id}", key=world.provider)
    assert reply.status == 204
    assert await confirmed_at() == clock.now()
    # A new name is not a statement about capacity; a status change is.
    before = clock.now()
    clock.advance(hours=1)
    reply = await world.api.patch(f"/v1/sites/{site_id}", {"name": "Renamed"}, key=world.provider)
    assert reply.status == 200 and _time(reply.body["capacity_confirmed_at"]) == before
    # A stale, announced site that is paused and reopened is fresh and announced again later.
    clock.advance(hours=8)
    await announce(db, clock)
    assert len(await _announced(db, site_id)) == 1
    reply = await world.api.patch(f"/v1/sites/{site_id}", {"status": "paused"}, key=world.provider)
    assert reply.body["stale"] is False and _time(reply.body["capacity_confirmed_at"]) == (
        clock.now()
    )
    clock.advance(hours=8)
    await announce(db, clock)  # paused: in no search, not announced
    assert len(await _announced(db, site_id)) == 1
    reply = await world.api.patch(f"/v1/sites/{site_id}", {"status": "active"}, key=world.provider)
    assert reply.body["stale"] is False
    clock.advance(hours=8)
    await announce(db, clock)
    assert len(await _announced(db, site_id)) == 2


async def test_who_may_confirm_and_how_it_is_audited(
    world: World, db: Pool, clock: ManualClock, origin: Point
) -> None:
    site = await _site(world, origin, "Audited")
    path = f"/v1/sites/{site['id']}/confirm-capacity"
    assert (await world.api.post(path, key=world.officer)).status == 403
    assert (await world.api.post(path, key=world.admin)).status == 403
    assert (await world.api.post(path, key=world.other_provider)).status == 404
    missing = "/v1/sites/00000000-0000-0000-0000-000000000000/confirm-capacity"
    assert (await world.api.post(missing, key=world.provider)).status == 404
    clock.advance(hours=1)
    first = await world.api.post(path, key=world.provider, headers={"Idempotency-Key": "c-1"})
    assert first.status == 200, first.body
    assert first.headers["ETag"] == f'"{site["version"]}"'
    clock.advance(minutes=5)
    again = await world.api.post(path, key=world.provider, headers={"Idempotency-Key": "c-1"})
    assert again.status == 200 and again.body == first.body  # a retry replays the answer
    later = await world.api.post(path, key=world.provider)
    assert _time(later.body["capacity_confirmed_at"]) == clock.now()
    rows = await db.fetch(
        "SELECT action, fields, role FROM audit WHERE object_type = 'site' AND object_id = $1"
        " AND action = 'update' ORDER BY id",
        site["id"],
    )
    assert [(r["action"], list(r["fields"]), r["role"]) for r in rows] == [
        ("update", ["capacity_confirmed_at"], "provider"),
        ("update", ["capacity_confirmed_at"], "provider"),
    ]


async def test_stale_after_hours_is_a_setting(
    make_api: AppFactory, db: Pool, clock: ManualClock, origin: Point
) -> None:
    api = await make_api(settings_overrides={"stale_after_hours": 1})
    world = await World.create(api, db)
    site = await _site(world, origin, "Quick")
    clock.advance(minutes=59)
    assert (await _get(world, site["id"]))["stale"] is False
    clock.advance(minutes=1)
    assert (await _get(world, site["id"]))["stale"] is True
    (item,) = await _search(world, clock, origin)
    assert item["stale"] is True


async def test_the_report_lists_stale_sites_longest_first_in_scope(
    world: World, clock: ManualClock, origin: Point
) -> None:
    """Item 6: the report lists the sites whose capacity is stale now, by hours unconfirmed:
    every one for admins, a provider's own, none for officers."""
    older = await _site(world, origin, "Older")
    clock.advance(hours=2)
    newer = await _site(world, origin, "Newer")
    others = await world.site(key=world.other_provider, location=origin.location())
    await world.bed(others["id"], key=world.other_provider)
    clock.advance(hours=9)  # newer: 9 h unconfirmed, older: 11 h, both past STALE_AFTER
    fresh = await _site(world, origin, "Fresh")
    window = {"start": clock.now() - timedelta(days=1), "end": clock.now()}

    async def listed(key: str) -> list[tuple[str, float]]:
        reply = await world.api.get("/v1/reports/summary", key=key, params=window)
        assert reply.status == 200, reply.body
        return [(s["site_id"], s["hours_unconfirmed"]) for s in reply.body["stale_sites"]]

    mine = await listed(world.provider)
    assert mine == [(older["id"], 11.0), (newer["id"], 9.0)]
    everyone = {site for site, _ in await listed(world.admin)}
    assert {older["id"], newer["id"], others["id"]} <= everyone
    assert fresh["id"] not in everyone
    assert await listed(world.officer) == []
    # Confirming takes a site off the list.
    confirmed = await world.api.post(
        f"/v1/sites/{older['id']}/confirm-capacity", None, key=world.provider
    )
    assert confirmed.status == 200
    assert await listed(world.provider) == [(newer["id"], 9.0)]
