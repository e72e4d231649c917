"""What capacity changes record (issue 8 items 4 and 5): one audit row per site, bed or block
created, changed or removed, naming the fields changed; one site.availability_changed per
change a search could see, none for the rest; nothing at all for a refused change or a read."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from service.auth import hash_key
from service.db import Pool
from tests.support.api import Reply
from tests.support.clock import ManualClock
from tests.support.world import World, site_body

WINDOW = {"start": "2031-05-01T00:00:00Z", "end": "2031-05-03T00:00:00Z"}

SINCE = "SELECT (SELECT coalesce(max(id), 0) FROM event), (SELECT coalesce(max(id), 0) FROM audit)"
EVENTS = """
SELECT type, site_id::text, provider_id::text, data, occurred_at FROM event
WHERE id > $1 ORDER BY id
"""
AUDITS = """
SELECT at, api_key_id, role, scope, request_id, action, object_type, object_id, fields
FROM audit WHERE id > $1 ORDER BY id
"""


@dataclass
class Records:
    events: list[dict[str, Any]]
    audits: list[dict[str, Any]]

    def causes(self) -> list[tuple[str, str]]:
        return [(e["site_id"], e["data"]["cause"]) for e in self.events]

    def changes(self) -> list[tuple[str, str, str, list[str]]]:
        return [(a["action"], a["object_type"], a["object_id"], a["fields"]) for a in self.audits]


class Recorder:
    """What the event outbox and the audit log gained since the last look."""

    def __init__(self, db: Pool) -> None:
        self.db = db
        self.marks = (0, 0)

    async def mark(self) -> None:
        async with self.db.acquire() as conn:
            self.marks = tuple(await conn.fetchrow(SINCE))  # type: ignore[assignment]

    async def since(self) -> Records:
        async with self.db.acquire() as conn:
            events = [dict(r) for r in await conn.fetch(EVENTS, self.marks[0])]
            audits = [dict(r) for r in await conn.fetch(AUDITS, self.marks[1])]
        await self.mark()
        return Records(events, audits)


@pytest.fixture
async def recorder(world: World, db: Pool) -> Recorder:
    recorder = Recorder(db)
    await recorder.mark()
    return recorder


SITE_FIELDS = sorted(
    [
        "address_by_phone_only",
        "name",
        "address",
        "area",
        "location",
        "genders_accepted",
        "languages",
        "interpreter_on_call",
        "booking_mode",
        "max_stay_hours",
        "status",
        "phone",
    ]
)


async def test_a_new_site_is_audited_and_announces_nothing(
    world: World, recorder: Recorder
) -> None:
    site = await world.site()
    got = await recorder.since()
    assert got.events == []
    assert got.changes() == [("create", "site", site["id"], SITE_FIELDS)]


async def test_each_audit_row_names_the_caller_and_the_request(
    world: World, db: Pool, recorder: Recorder, clock: ManualClock
) -> None:
    reply = await world.api.post(
        "/v1/sites",
        site_body(name="Audited"),
        key=world.provider,
        headers={"X-Request-ID": "req-capacity-1"},
    )
    assert reply.status == 201
    got = await recorder.since()
    async with db.acquire() as conn:
        key_id = await conn.fetchval(
            "SELECT id FROM api_key WHERE key_hash = $1", hash_key(world.provider)
        )
    [row] = got.audits
    assert row["api_key_id"] == key_id
    assert (row["role"], row["scope"], row["request_id"]) == (
        "provider",
        world.provider_id,
        "req-capacity-1",
    )
    assert row["at"] == clock.now()


SEARCHED = [
    ("status", "paused"),
    ("genders_accepted", ["male"]),
    ("booking_mode", "request"),
    ("max_stay_hours", 48),
    ("location", {"lat": 51.5, "lon": -0.12}),
    ("name", "Renamed House"),
    ("area", "Bradford"),
    ("languages", ["en", "pl"]),
    ("interpreter_on_call", True),
]


@pytest.mark.parametrize(("field", "value"), SEARCHED, ids=[f for f, _ in SEARCHED])
async def test_a_site_change_a_search_can_see_announces_once(
    world: World, recorder: Recorder, field: str, value: Any
) -> None:
    site = await world.site()
    await world.bed(site["id"])
    await recorder.mark()
    reply = await world.api.patch(f"/v1/sites/{site['id']}", {field: value}, key=world.provider)
    assert reply.status == 200, reply.body
    got = await recorder.since()
    assert got.causes() == [(site["id"], "site_changed")]
    assert got.events[0]["type"] == "site.availability_changed"
    assert got.events[0]["provider_id"] == world.provider_id
    assert got.changes() == [("update", "site", site["id"], [field])]


@pytest.mark.parametrize(
    "change",
    [
        {"phone": "+44 113 496 0999"},
        {"address": "2 Other Street, Leeds LS1 1AB"},
        {"phone": "+44 113 496 0998", "address": "3 Other Street, Leeds LS1 1AB"},
    ],
    ids=["phone", "address", "both"],
)
async def test_a_site_change_no_search_shows_announces_nothing(
    world: World, recorder: Recorder, change: dict[str, Any]
) -> None:
    site = await world.site()
    await world.bed(site["id"])
    await recorder.mark()
    reply = await world.api.patch(f"/v1/sites/{site['id']}", change, key=world.provider)
    assert reply.status == 200, reply.body
    got = await recorder.since()
    assert got.events == []
    assert got.changes() == [("update", "site", site["id"], sorted(change))]


async def test_only_fields_whose_value_changed_are_named(world: World, recorder: Recorder) -> None:
    site = await world.site()
    await recorder.mark()
    same = {k: site[k] for k in ("status", "name", "location", "genders_accepted")}
    reply = await world.api.patch(
        f"/v1/sites/{site['id']}", {**same, "phone": "+44 113 496 0111"}, key=world.provider
    )
    assert reply.status == 200 and reply.body["version"] == 2
    got = await recorder.since()
    assert got.events == []
    assert got.changes() == [("update", "site", site["id"], ["phone"])]
    unchanged = await world.api.patch(
        f"/v1/sites/{site['id']}", {"status": site["status"]}, key=world.provider
    )
    assert unchanged.status == 200
    got = await recorder.since()
    assert got.events == []
    assert got.changes() == [("update", "site", site["id"], [])]


async def test_beds_added_changed_and_removed(world: World, recorder: Recorder) -> None:
    site = await world.site()
    await recorder.mark()
    sid = site["id"]
    bed = await world.bed(sid)
    got = await recorder.since()
    assert got.causes() == [(sid, "bed_added")]
    assert got.changes() == [
        (
            "create",
            "bed",
            bed["id"],
            ["in_service", "label", "max_dependants", "room_type", "wheelchair_accessible"],
        )
    ]

    path = f"/v1/sites/{sid}/beds/{bed['id']}"
    for change, announced in [
        ({"label": "Renamed room"}, False),
        ({"room_type": "shared"}, False),
        ({"label": "Room X", "room_type": "family"}, False),
        ({"in_service": False}, True),
        ({"in_service": True}, True),
        ({"max_dependants": 3}, True),
        ({"wheelchair_accessible": True}, True),
        ({"label": "Room Y", "max_dependants": 1}, True),
        ({"max_dependants": 1}, False),
    ]:
        reply = await world.api.patch(path, change, key=world.provider)
        assert reply.status == 200, reply.body
        got = await recorder.since()
        expected_events = [(sid, "bed_changed")] if announced else []
        assert got.causes() == expected_events, change
        changed = [] if change == {"max_dependants": 1} else sorted(change)
        assert got.changes() == [("update", "bed", bed["id"], changed)], change

    removed = await world.api.delete(path, key=world.provider)
    assert removed.status == 204
    got = await recorder.since()
    assert got.causes() == [(sid, "bed_removed")]
    assert got.changes() == [("delete", "bed", bed["id"], [])]


async def test_blocks_added_and_removed(world: World, recorder: Recorder) -> None:
    site = await world.site()
    bed = await world.bed(site["id"])
    await recorder.mark()
    path = f"/v1/sites/{site['id']}/blocks"
    block = await world.api.post(
        path, {"bed_id": bed["id"], **WINDOW, "reason": "repairs"}, key=world.provider
    )
    assert block.status == 201
    got = await recorder.since()
    assert got.causes() == [(site["id"], "block_added")]
    assert got.changes() == [
        ("create", "block", block.body["id"], ["bed_id", "end", "reason", "start"])
    ]
    lifted = await world.api.delete(f"{path}/{block.body['id']}", key=world.provider)
    assert lifted.status == 204
    got = await recorder.since()
    assert got.causes() == [(site["id"], "block_removed")]
    assert got.changes() == [("delete", "block", block.body["id"], [])]


async def test_a_block_on_an_out_of_service_bed_is_still_allowed(
    world: World, recorder: Recorder
) -> None:
    site = await world.site()
    bed = await world.bed(site["id"], in_service=False)
    await recorder.mark()
    block = await world.api.post(
        f"/v1/sites/{site['id']}/blocks",
        {"bed_id": bed["id"], **WINDOW, "reason": "refit"},
        key=world.provider,
    )
    assert block.status == 201, block.body
    assert (await recorder.since()).causes() == [(site["id"], "block_added")]


async def test_a_refused_change_leaves_no_event_and_no_audit_row(
    world: World, recorder: Recorder
) -> None:
    site = await world.site()
    bed = await world.bed(site["id"])
    await recorder.mark()
    refusals = await _refusals_on(world, site["id"], bed["id"])
    for reply, status in refusals:
        assert reply.status == status, reply.body
    got = await recorder.since()
    assert got.events == [] and got.audits == []


async def _refusals_on(world: World, sid: str, bed_id: str) -> list[tuple[Reply, int]]:
    """Each refused change on a site that has one bed and nothing else."""
    blocks = f"/v1/sites/{sid}/blocks"
    beds = f"/v1/sites/{sid}/beds"
    return [
        (
            await world.api.post(
                blocks,
                {"bed_id": "00000000-0000-0000-0000-000000000000", **WINDOW, "reason": "y"},
                key=world.provider,
            ),
            404,
        ),
        (
            await world.api.patch(
                f"{beds}/{bed_id}",
                {"in_service": False},
                key=world.provider,
                headers={"If-Match": '"7"'},
            ),
            412,
        ),
        (
            await world.api.delete(
                f"{beds}/{bed_id}", key=world.provider, headers={"If-Match": '"7"'}
            ),
            412,
        ),
        (
            await world.api.patch(
                f"/v1/sites/{sid}",
                {"status": "closed"},
                key=world.provider,
                headers={"If-Match": '"7"'},
            ),
            412,
        ),
        (
            await world.api.patch(
                f"/v1/sites/{sid}", {"status": "closed"}, key=world.other_provider
            ),
            404,
        ),
        (await world.api.post(beds, {"label": "Z", "room_type": "single"}, key=world.admin), 403),
        (await world.api.delete(f"{blocks}/{bed_id}", key=world.provider), 404),
    ]


async def test_conflicts_roll_back_their_records(world: World, recorder: Recorder) -> None:
    """An overlapping block, a repeated label and removing a blocked bed: the statement that
    failed took its savepoint's rows with it, and the request recorded nothing."""
    site = await world.site()
    bed = await world.bed(site["id"], label="Room 1")
    blocks = f"/v1/sites/{site['id']}/blocks"
    first = await world.api.post(
        blocks, {"bed_id": bed["id"], **WINDOW, "reason": "x"}, key=world.provider
    )
    assert first.status == 201
    await recorder.mark()
    overlap = await world.api.post(
        blocks, {"bed_id": bed["id"], **WINDOW, "reason": "y"}, key=world.provider
    )
    assert overlap.status == 409 and overlap.problem_type == "overlap"
    repeated = await world.api.post(
        f"/v1/sites/{site['id']}/beds",
        {"label": "room 1", "room_type": "single"},
        key=world.provider,
    )
    assert repeated.status == 409 and repeated.problem_type == "already-exists"
    in_use = await world.api.delete(f"/v1/sites/{site['id']}/beds/{bed['id']}", key=world.provider)
    assert in_use.status == 409 and in_use.problem_type == "bed-in-use"
    got = await recorder.since()
    assert got.events == [] and got.audits == []


async def test_reads_record_nothing(world: World, recorder: Recorder) -> None:
    site = await world.site()
    bed = await world.bed(site["id"])
    await world.api.post(
        f"/v1/sites/{site['id']}/blocks",
        {"bed_id": bed["id"], **WINDOW, "reason": "x"},
        key=world.provider,
    )
    await recorder.mark()
    sid = site["id"]
    for key in (world.provider, world.admin):
        for path, params in [
            ("/v1/sites", None),
            (f"/v1/sites/{sid}", None),
            (f"/v1/sites/{sid}/beds", None),
            (f"/v1/sites/{sid}/blocks", None),
            (f"/v1/sites/{sid}/occupancy", WINDOW),
        ]:
            reply = await world.api.get(path, key=key, params=params)
            assert reply.status == 200, (path, reply.body)
    got = await recorder.since()
    assert got.events == [] and got.audits == []
