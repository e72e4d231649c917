"""Sites, beds, blocks and occupancy: scope, versions, overlaps, paging."""

from __future__ import annotations

import asyncio

from service.db import Pool
from tests.support.world import World

WINDOW = {"start": "2031-05-01T00:00:00Z", "end": "2031-05-08T00:00:00Z"}


async def test_site_round_trip_and_etag(world: World) -> None:
    site = await world.site(languages=["en", "ro"], interpreter_on_call=True)
    reply = await world.api.get(f"/v1/sites/{site['id']}", key=world.provider)
    assert reply.status == 200
    assert reply.headers["ETag"] == '"1"'
    assert reply.body == site
    assert site["location"] == {"lat": 53.7997, "lon": -1.5492}
    assert site["provider_id"] == world.provider_id
    assert site["status"] == "active" and site["version"] == 1


async def test_patch_changes_only_given_fields_and_bumps_version(world: World) -> None:
    site = await world.site()
    reply = await world.api.patch(
        f"/v1/sites/{site['id']}",
        {"status": "paused", "location": {"lat": 51.5, "lon": -0.12}},
        key=world.provider,
        headers={"If-Match": '"1"'},
    )
    assert reply.status == 200, reply.body
    assert reply.headers["ETag"] == '"2"'
    changed = reply.body
    assert changed["status"] == "paused" and changed["location"] == {"lat": 51.5, "lon": -0.12}
    assert {
        k: v for k, v in changed.items() if k not in {"status", "location", "version", "updated_at"}
    } == {k: v for k, v in site.items() if k not in {"status", "location", "version", "updated_at"}}


async def test_stale_if_match_is_412_and_changes_nothing(world: World) -> None:
    site = await world.site()
    first = await world.api.patch(
        f"/v1/sites/{site['id']}",
        {"name": "Renamed"},
        key=world.provider,
        headers={"If-Match": '"1"'},
    )
    assert first.status == 200
    stale = await world.api.patch(
        f"/v1/sites/{site['id']}",
        {"name": "Lost update"},
        key=world.provider,
        headers={"If-Match": '"1"'},
    )
    assert stale.status == 412
    assert stale.problem_type == "precondition-failed"
    assert stale.body["current_version"] == 2
    now = await world.api.get(f"/v1/sites/{site['id']}", key=world.provider)
    assert now.body["name"] == "Renamed" and now.body["version"] == 2


async def test_bed_stale_if_match_is_412(world: World) -> None:
    site = await world.site()
    bed = await world.bed(site["id"])
    path = f"/v1/sites/{site['id']}/beds/{bed['id']}"
    ok = await world.api.patch(
        path, {"max_dependants": 2}, key=world.provider, headers={"If-Match": '"1"'}
    )
    assert ok.status == 200 and ok.body["version"] == 2 and ok.body["max_dependants"] == 2
    stale = await world.api.patch(
        path, {"in_service": False}, key=world.provider, headers={"If-Match": '"1"'}
    )
    assert stale.status == 412
    gone = await world.api.delete(path, key=world.provider, headers={"If-Match": '"1"'})
    assert gone.status == 412
    beds = await world.api.get(f"/v1/sites/{site['id']}/beds", key=world.provider)
    assert beds.body["items"][0]["in_service"] is True


async def test_concurrent_patches_with_same_version_one_wins(world: World) -> None:
    site = await world.site()

    async def patch(name: str) -> int:
        reply = await world.api.patch(
            f"/v1/sites/{site['id']}",
            {"name": name},
            key=world.provider,
            headers={"If-Match": '"1"'},
        )
        return reply.status

    statuses = await asyncio.gather(*(patch(f"Name {i}") for i in range(10)))
    assert sorted(statuses) == [200] + [412] * 9


async def test_another_provider_cannot_see_or_change_a_site(world: World, db: Pool) -> None:
    site = await world.site()
    bed = await world.bed(site["id"])
    other = world.other_provider
    sid = site["id"]
    attempts = [
        world.api.get(f"/v1/sites/{sid}", key=other),
        world.api.patch(f"/v1/sites/{sid}", {"status": "closed"}, key=other),
        world.api.get(f"/v1/sites/{sid}/beds", key=other),
        world.api.post(f"/v1/sites/{sid}/beds", {"label": "X", "room_type": "single"}, key=other),
        world.api.patch(f"/v1/sites/{sid}/beds/{bed['id']}", {"in_service": False}, key=other),
        world.api.delete(f"/v1/sites/{sid}/beds/{bed['id']}", key=other),
        world.api.post(
            f"/v1/sites/{sid}/blocks", {"bed_id": bed["id"], **WINDOW, "reason": "x"}, key=other
        ),
        world.api.get(f"/v1/sites/{sid}/occupancy", key=other, params=WINDOW),
    ]
    for reply in await asyncio.gather(*attempts):
        assert reply.status == 404, reply.body
        assert reply.body["detail"] == "site not found"
    listed = await world.api.all_items("/v1/sites", key=other)
    assert sid not in {s["id"] for s in listed}
    async with db.acquire() as conn:
        row = await conn.fetchrow("SELECT status, version FROM site WHERE id = $1::uuid", sid)
        beds = await conn.fetchval("SELECT count(*) FROM bed WHERE site_id = $1::uuid", sid)
        blocks = await conn.fetchval(
            "SELECT count(*) FROM allocation WHERE site_id = $1::uuid", sid
        )
    assert (row["status"], row["version"], beds, blocks) == ("active", 1, 1, 0)


async def test_admin_lists_every_providers_sites(world: World) -> None:
    mine = await world.site()
    theirs = await world.site(key=world.other_provider)
    ids = {s["id"] for s in await world.api.all_items("/v1/sites", key=world.admin)}
    assert {mine["id"], theirs["id"]} <= ids
    own = {s["id"] for s in await world.api.all_items("/v1/sites", key=world.provider)}
    assert own == {mine["id"]}


async def test_bed_labels_are_unique_per_site(world: World) -> None:
    site = await world.site()
    await world.bed(site["id"], label="Room 1")
    again = await world.api.post(
        f"/v1/sites/{site['id']}/beds",
        {"label": "room 1", "room_type": "shared"},
        key=world.provider,
    )
    assert again.status == 409 and again.problem_type == "already-exists"
    elsewhere = await world.site()
    await world.bed(elsewhere["id"], label="Room 1")


async def test_overlapping_block_is_409_naming_the_conflict(world: World, db: Pool) -> None:
    site = await world.site()
    bed = await world.bed(site["id"])
    path = f"/v1/sites/{site['id']}/blocks"
    first = await world.api.post(
        path,
        {
            "bed_id": bed["id"],
            "start": "2031-05-01T00:00:00Z",
            "end": "2031-05-03T00:00:00Z",
            "reason": "repairs",
        },
        key=world.provider,
    )
    assert first.status == 201
    overlap = await world.api.post(
        path,
        {
            "bed_id": bed["id"],
            "start": "2031-05-02T12:00:00Z",
            "end": "2031-05-04T00:00:00Z",
            "reason": "painting",
        },
        key=world.provider,
    )
    assert overlap.status == 409
    assert overlap.problem_type == "overlap"
    assert overlap.body["conflict"] == {
        "kind": "block",
        "id": first.body["id"],
        "status": "blocked",
        "start": "2031-05-01T00:00:00Z",
        "end": "2031-05-03T00:00:00Z",
    }
    # [start, end) is half-open: a block may begin exactly when the last one ends.
    adjacent = await world.api.post(
        path,
        {
            "bed_id": bed["id"],
            "start": "2031-05-03T00:00:00Z",
            "end": "2031-05-04T00:00:00Z",
            "reason": "painting",
        },
        key=world.provider,
    )
    assert adjacent.status == 201
    async with db.acquire() as conn:
        count = await conn.fetchval(
            "SELECT count(*) FROM allocation WHERE bed_id = $1::uuid", bed["id"]
        )
    assert count == 2


async def test_concurrent_overlapping_blocks_one_wins(world: World) -> None:
    site = await world.site()
    bed = await world.bed(site["id"])

    async def block(hour: int) -> int:
        reply = await world.api.post(
            f"/v1/sites/{site['id']}/blocks",
            {
                "bed_id": bed["id"],
                "start": f"2031-05-01T{hour:02d}:00:00Z",
                "end": "2031-05-02T00:00:00Z",
                "reason": "x",
            },
            key=world.provider,
        )
        return reply.status

    statuses = await asyncio.gather(*(block(h) for h in range(12)))
    assert sorted(statuses) == [201] + [409] * 11


async def test_block_on_another_sites_bed_is_404(world: World) -> None:
    site = await world.site()
    other_site = await world.site()
    bed = await world.bed(other_site["id"])
    reply = await world.api.post(
        f"/v1/sites/{site['id']}/blocks",
        {"bed_id": bed["id"], **WINDOW, "reason": "x"},
        key=world.provider,
    )
    assert reply.status == 404


async def test_lifting_a_block_frees_the_bed(world: World) -> None:
    site = await world.site()
    bed = await world.bed(site["id"])
    path = f"/v1/sites/{site['id']}/blocks"
    block = await world.api.post(
        path, {"bed_id": bed["id"], **WINDOW, "reason": "x"}, key=world.provider
    )
    listed = await world.api.get(path, key=world.provider, params={"bed_id": bed["id"]})
    assert [b["id"] for b in listed.body["items"]] == [block.body["id"]]
    assert (await world.api.delete(f"{path}/{block.body['id']}", key=world.provider)).status == 204
    assert (await world.api.delete(f"{path}/{block.body['id']}", key=world.provider)).status == 404
    again = await world.api.post(
        path, {"bed_id": bed["id"], **WINDOW, "reason": "y"}, key=world.provider
    )
    assert again.status == 201


async def test_a_blocked_bed_cannot_be_removed_until_the_block_is_lifted(world: World) -> None:
    site = await world.site()
    bed = await world.bed(site["id"])
    blocks = f"/v1/sites/{site['id']}/blocks"
    block = await world.api.post(
        blocks, {"bed_id": bed["id"], **WINDOW, "reason": "x"}, key=world.provider
    )
    refused = await world.api.delete(f"/v1/sites/{site['id']}/beds/{bed['id']}", key=world.provider)
    assert refused.status == 409 and refused.body["conflict"]["id"] == block.body["id"]
    await world.api.delete(f"{blocks}/{block.body['id']}", key=world.provider)
    removed = await world.api.delete(f"/v1/sites/{site['id']}/beds/{bed['id']}", key=world.provider)
    assert removed.status == 204
    beds = await world.api.get(f"/v1/sites/{site['id']}/beds", key=world.provider)
    assert beds.body["items"] == []
    # A removed bed's label is free again.
    await world.bed(site["id"], label=bed["label"])


async def test_occupancy_timeline_per_bed(world: World) -> None:
    site = await world.site()
    beds = [await world.bed(site["id"], label=f"Room {i}") for i in range(3)]
    path = f"/v1/sites/{site['id']}/blocks"
    inside = await world.api.post(
        path,
        {
            "bed_id": beds[1]["id"],
            "start": "2031-05-02T00:00:00Z",
            "end": "2031-05-03T00:00:00Z",
            "reason": "boiler",
        },
        key=world.provider,
    )
    await world.api.post(
        path,
        {
            "bed_id": beds[2]["id"],
            "start": "2031-06-01T00:00:00Z",
            "end": "2031-06-03T00:00:00Z",
            "reason": "later",
        },
        key=world.provider,
    )
    reply = await world.api.get(f"/v1/sites/{site['id']}/occupancy", key=world.admin, params=WINDOW)
    assert reply.status == 200
    timeline = {b["label"]: b["allocations"] for b in reply.body["beds"]}
    assert timeline == {
        "Room 0": [],
        "Room 1": [
            {
                "kind": "block",
                "id": inside.body["id"],
                "status": "blocked",
                "start": "2031-05-02T00:00:00Z",
                "end": "2031-05-03T00:00:00Z",
                "reason": "boiler",
            }
        ],
        "Room 2": [],
    }


async def test_occupancy_window_is_bounded(world: World) -> None:
    site = await world.site()
    reply = await world.api.get(
        f"/v1/sites/{site['id']}/occupancy",
        key=world.provider,
        params={"start": "2031-01-01T00:00:00Z", "end": "2031-06-01T00:00:00Z"},
    )
    assert reply.status == 400


async def test_paging_is_complete_and_stable_under_inserts(world: World) -> None:
    site = await world.site()
    made = [await world.bed(site["id"], label=f"Bed {i:02d}") for i in range(5)]
    path = f"/v1/sites/{site['id']}/beds"
    first = await world.api.get(path, key=world.provider, params={"limit": 2})
    assert [b["label"] for b in first.body["items"]] == ["Bed 00", "Bed 01"]
    late = await world.bed(site["id"], label="Bed 99")
    seen = list(first.body["items"])
    cursor = first.body["next_cursor"]
    while cursor:
        page = await world.api.get(path, key=world.provider, params={"limit": 2, "cursor": cursor})
        seen.extend(page.body["items"])
        cursor = page.body["next_cursor"]
    assert [b["id"] for b in seen] == [b["id"] for b in made] + [late["id"]]


async def test_forces_and_providers(world: World) -> None:
    forces = await world.api.all_items("/v1/forces", key=world.officer)
    assert {"code": world.force, "name": f"Force {world.force}"} in forces
    codes = [f["code"] for f in forces]
    assert codes == sorted(codes)
    duplicate = await world.api.post(
        "/v1/forces", {"code": world.force, "name": "Again"}, key=world.admin
    )
    assert duplicate.status == 409
    provider = await world.api.get(f"/v1/providers/{world.provider_id}", key=world.officer)
    assert provider.body["id"] == world.provider_id
    same_name = await world.api.post(
        "/v1/providers", {"name": provider.body["name"].upper()}, key=world.admin
    )
    assert same_name.status == 409
    missing = await world.api.get(
        "/v1/providers/00000000-0000-0000-0000-000000000000", key=world.admin
    )
    assert missing.status == 404


async def test_api_key_scope_must_match_role(world: World) -> None:
    cases = [
        # A rule across fields names the field to change (issue 17), not the whole body.
        ({"role": "officer"}, "force"),
        ({"role": "provider", "force": world.force}, "provider_id"),
        ({"role": "admin", "force": world.force}, "force"),
        ({"role": "officer", "force": "no-such-force"}, "force"),
        (
            {"role": "provider", "provider_id": "00000000-0000-0000-0000-000000000000"},
            "provider_id",
        ),
    ]
    for body, field in cases:
        reply = await world.api.post("/v1/api-keys", {"name": "k", **body}, key=world.admin)
        assert reply.status == 400, (body, reply.body)
        assert reply.field_names() == {field}
