"""Idempotency-Key on POST: replay, mismatch, in flight, retryable answers not stored."""

from __future__ import annotations

import asyncio

from service.db import Pool
from tests.support.world import World, bed_body, site_body, unique


async def _sites(db: Pool, provider_id: str) -> int:
    async with db.acquire() as conn:
        return int(
            await conn.fetchval(
                "SELECT count(*) FROM site WHERE provider_id = $1::uuid", provider_id
            )
        )


async def test_same_key_and_body_replays_the_first_answer(world: World, db: Pool) -> None:
    body = site_body()
    headers = {"Idempotency-Key": unique("k")}
    first = await world.api.post("/v1/sites", body, key=world.provider, headers=headers)
    again = await world.api.post("/v1/sites", body, key=world.provider, headers=headers)
    assert first.status == again.status == 201
    assert again.body == first.body
    assert again.headers["Location"] == first.headers["Location"]
    assert again.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.headers
    assert await _sites(db, world.provider_id) == 1


async def test_same_key_other_body_is_422(world: World, db: Pool) -> None:
    headers = {"Idempotency-Key": unique("k")}
    first = await world.api.post("/v1/sites", site_body(), key=world.provider, headers=headers)
    other = await world.api.post("/v1/sites", site_body(), key=world.provider, headers=headers)
    assert first.status == 201
    assert other.status == 422 and other.problem_type == "idempotency-key-reuse"
    assert await _sites(db, world.provider_id) == 1


async def test_keys_are_per_caller(world: World) -> None:
    other_provider_key = world.other_provider
    headers = {"Idempotency-Key": "shared-key-name"}
    body = site_body()
    mine = await world.api.post("/v1/sites", body, key=world.provider, headers=headers)
    theirs = await world.api.post("/v1/sites", body, key=other_provider_key, headers=headers)
    assert mine.status == theirs.status == 201
    assert mine.body["id"] != theirs.body["id"]


async def test_concurrent_duplicates_create_one_site(world: World, db: Pool) -> None:
    body = site_body()
    headers = {"Idempotency-Key": unique("k")}
    replies = await asyncio.gather(
        *(world.api.post("/v1/sites", body, key=world.provider, headers=headers) for _ in range(10))
    )
    statuses = sorted(r.status for r in replies)
    assert set(statuses) <= {201, 409}
    created = {r.body["id"] for r in replies if r.status == 201}
    assert len(created) == 1
    in_flight = [r for r in replies if r.status == 409]
    assert all(r.problem_type == "idempotency-in-flight" for r in in_flight)
    assert await _sites(db, world.provider_id) == 1


async def test_conflicts_are_not_stored_so_a_retry_runs_again(world: World) -> None:
    site = await world.site()
    await world.bed(site["id"], label="Room A")
    headers = {"Idempotency-Key": unique("k")}
    path = f"/v1/sites/{site['id']}/beds"
    clash = await world.api.post(
        path, bed_body(label="Room A"), key=world.provider, headers=headers
    )
    assert clash.status == 409
    # The bed in the way is renamed; the same request with the same key now succeeds.
    beds = await world.api.get(path, key=world.provider)
    renamed = await world.api.patch(
        f"{path}/{beds.body['items'][0]['id']}", {"label": "Room Z"}, key=world.provider
    )
    assert renamed.status == 200
    retry = await world.api.post(
        path, bed_body(label="Room A"), key=world.provider, headers=headers
    )
    assert retry.status == 201


async def test_validation_errors_are_stored_and_replayed(world: World) -> None:
    headers = {"Idempotency-Key": unique("k")}
    bad = site_body(phone="nope")
    first = await world.api.post("/v1/sites", bad, key=world.provider, headers=headers)
    again = await world.api.post("/v1/sites", bad, key=world.provider, headers=headers)
    assert first.status == again.status == 400
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.body == first.body


async def test_replayed_api_key_creation_does_not_show_the_secret_again(world: World) -> None:
    headers = {"Idempotency-Key": unique("k")}
    body = {"name": unique("ops"), "role": "admin"}
    first = await world.api.post("/v1/api-keys", body, key=world.admin, headers=headers)
    again = await world.api.post("/v1/api-keys", body, key=world.admin, headers=headers)
    assert first.status == again.status == 201
    assert first.body["key"].startswith("pos_")
    assert again.body["key"] is None
    assert {k: v for k, v in again.body.items() if k != "key"} == {
        k: v for k, v in first.body.items() if k != "key"
    }


async def test_idempotency_key_must_be_printable(world: World) -> None:
    reply = await world.api.post(
        "/v1/sites", site_body(), key=world.provider, headers={"Idempotency-Key": "x" * 256}
    )
    assert reply.status == 400
    assert reply.field_names() == {"Idempotency-Key"}


async def test_keys_expire_after_a_day(world: World, db: Pool, make_api, clock) -> None:  # type: ignore[no-untyped-def]
    headers = {"Idempotency-Key": unique("k")}
    first = await world.api.post("/v1/sites", site_body(), key=world.provider, headers=headers)
    assert first.status == 201
    clock.advance(hours=24, seconds=1)
    # A day later the key is free again: another body is a new request, not a 422.
    second = await world.api.post("/v1/sites", site_body(), key=world.provider, headers=headers)
    assert second.status == 201 and second.body["id"] != first.body["id"]
