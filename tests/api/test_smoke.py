"""A first walk through the capacity API."""

from __future__ import annotations

from tests.support.world import World


async def test_provider_registers_site_beds_and_block(world: World) -> None:
    site = await world.site()
    beds = [await world.bed(site["id"], room_type=t) for t in ("single", "shared", "family")]
    api = world.api
    reply = await api.post(
        f"/v1/sites/{site['id']}/blocks",
        {
            "bed_id": beds[0]["id"],
            "start": "2030-01-01T00:00:00Z",
            "end": "2030-01-02T00:00:00Z",
            "reason": "repairs",
        },
        key=world.provider,
    )
    assert reply.status == 201, reply.body
    reply = await api.get(
        f"/v1/sites/{site['id']}/occupancy",
        key=world.provider,
        params={"start": "2029-12-31T00:00:00Z", "end": "2030-01-03T00:00:00Z"},
    )
    assert reply.status == 200, reply.body
    assert [len(b["allocations"]) for b in reply.body["beds"]] == [1, 0, 0]
