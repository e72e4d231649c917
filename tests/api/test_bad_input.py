"""Bad input gets a clear problem+json 4xx that names the field, and changes nothing."""

from __future__ import annotations

from typing import Any

import pytest

from service.db import Pool
from tests.support.world import World, site_body

COUNT_SITES = "SELECT count(*) FROM site WHERE provider_id = $1::uuid"
COUNT_BLOCKS = "SELECT count(*) FROM allocation WHERE site_id = $1::uuid"


async def _count(db: Pool, sql: str, arg: str) -> int:
    async with db.acquire() as conn:
        return int(await conn.fetchval(sql, arg))


@pytest.mark.parametrize(
    ("raw", "field", "message"),
    [
        (b'{"name": "x",', "body", "not valid JSON"),
        (b"", "body", "not valid JSON"),
        (b"[]", "body", "should be an object"),
    ],
)
async def test_malformed_json_is_400(
    world: World, db: Pool, raw: bytes, field: str, message: str
) -> None:
    reply = await world.api.request("POST", "/v1/sites", data=raw, key=world.provider)
    assert reply.status == 400
    assert reply.content_type == "application/problem+json"
    assert reply.problem_type == "validation-error"
    errors = reply.body["errors"]
    assert errors[0]["field"] == field and message in errors[0]["message"]
    assert await _count(db, COUNT_SITES, world.provider_id) == 0


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"max_stay_hours": "72"}, "max_stay_hours"),
        ({"max_stay_hours": 72.5}, "max_stay_hours"),
        ({"interpreter_on_call": "yes"}, "interpreter_on_call"),
        ({"location": {"lat": "north", "lon": 0}}, "location.lat"),
        ({"location": {"lat": 91, "lon": 0}}, "location.lat"),
        ({"genders_accepted": ["woman"]}, "genders_accepted.0"),
        ({"genders_accepted": []}, "genders_accepted"),
        ({"languages": ["english"]}, "languages.0"),
        ({"booking_mode": "whenever"}, "booking_mode"),
        ({"phone": "call me"}, "phone"),
        ({"name": None}, "name"),
    ],
)
async def test_wrong_types_are_400_naming_the_field(
    world: World, db: Pool, change: dict[str, Any], field: str
) -> None:
    reply = await world.api.post("/v1/sites", site_body(**change), key=world.provider)
    assert reply.status == 400, reply.body
    assert field in reply.field_names()
    assert await _count(db, COUNT_SITES, world.provider_id) == 0


async def test_missing_fields_are_each_named(world: World, db: Pool) -> None:
    body = site_body()
    for name in ("address", "location", "phone"):
        del body[name]
    reply = await world.api.post("/v1/sites", body, key=world.provider)
    assert reply.status == 400
    assert {"address", "location", "phone"} <= reply.field_names()
    assert all(e["message"] == "Field required" for e in reply.body["errors"])
    assert await _count(db, COUNT_SITES, world.provider_id) == 0


async def test_unknown_fields_are_refused(world: World, db: Pool) -> None:
    reply = await world.api.post(
        "/v1/sites",
        site_body(colour="blue", location={"lat": 1, "lon": 2, "alt": 3}),
        key=world.provider,
    )
    assert reply.status == 400
    assert reply.field_names() == {"colour", "location.alt"}
    assert {e["message"] for e in reply.body["errors"]} == {"unknown field"}
    assert await _count(db, COUNT_SITES, world.provider_id) == 0


@pytest.mark.parametrize(
    "start",
    [
        "2031-01-01T00:00:00",
        "2031-01-01 00:00:00Z",
        "01/01/2031",
        "1924992000",
        "2031-02-30T00:00:00Z",
    ],
)
async def test_timestamps_need_rfc3339_with_offset(world: World, db: Pool, start: str) -> None:
    site = await world.site()
    bed = await world.bed(site["id"])
    reply = await world.api.post(
        f"/v1/sites/{site['id']}/blocks",
        {"bed_id": bed["id"], "start": start, "end": "2031-01-02T00:00:00Z", "reason": "x"},
        key=world.provider,
    )
    assert reply.status == 400, reply.body
    assert reply.field_names() == {"start"}
    assert await _count(db, COUNT_BLOCKS, site["id"]) == 0


async def test_naive_timestamp_says_offset_is_missing(world: World) -> None:
    site = await world.site()
    reply = await world.api.get(
        f"/v1/sites/{site['id']}/occupancy",
        key=world.provider,
        params={"start": "2031-01-01T00:00:00", "end": "2031-01-02T00:00:00+01:00"},
    )
    assert reply.status == 400
    assert reply.body["errors"] == [
        {
            "field": "start",
            "message": "timestamp must include a UTC offset, e.g. 2026-11-23T03:00:00Z or +01:00",
        }
    ]


async def test_offsets_are_stored_and_returned_in_utc(world: World) -> None:
    site = await world.site()
    bed = await world.bed(site["id"])
    reply = await world.api.post(
        f"/v1/sites/{site['id']}/blocks",
        {
            "bed_id": bed["id"],
            "start": "2031-06-01T09:00:00+01:00",
            "end": "2031-06-01T17:30:00.250-04:00",
            "reason": "x",
        },
        key=world.provider,
    )
    assert reply.status == 201
    assert (reply.body["start"], reply.body["end"]) == (
        "2031-06-01T08:00:00Z",
        "2031-06-01T21:30:00.250000Z",
    )


async def test_oversized_body_is_413(world: World, db: Pool) -> None:
    body = site_body(address="x" * (70 * 1024))
    reply = await world.api.post("/v1/sites", body, key=world.provider)
    assert reply.status == 413
    assert reply.problem_type == "payload-too-large"
    assert await _count(db, COUNT_SITES, world.provider_id) == 0


async def test_body_must_be_json(world: World, db: Pool) -> None:
    reply = await world.api.request(
        "POST",
        "/v1/sites",
        data=b"name=x",
        key=world.provider,
        content_type="application/x-www-form-urlencoded",
    )
    assert reply.status == 415
    assert await _count(db, COUNT_SITES, world.provider_id) == 0


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"limit": "0"}, "limit"),
        ({"limit": "many"}, "limit"),
        ({"limit": "201"}, "limit"),
        ({"cursor": "not-a-cursor"}, "cursor"),
        ({"colour": "blue"}, "colour"),
    ],
)
async def test_bad_query_parameters_are_400(
    world: World, params: dict[str, str], field: str
) -> None:
    reply = await world.api.get("/v1/sites", key=world.provider, params=params)
    assert reply.status == 400
    assert reply.field_names() == {field}


async def test_end_before_start_is_400(world: World) -> None:
    site = await world.site()
    reply = await world.api.get(
        f"/v1/sites/{site['id']}/occupancy",
        key=world.provider,
        params={"start": "2031-01-02T00:00:00Z", "end": "2031-01-01T00:00:00Z"},
    )
    assert reply.status == 400
    assert reply.body["errors"][0]["message"] == "end must be after start"


async def test_unknown_route_and_method_are_problems(world: World) -> None:
    missing = await world.api.get("/v1/nowhere", key=world.admin, contract=False)
    assert missing.status == 404 and missing.content_type == "application/problem+json"
    wrong = await world.api.request("PUT", "/v1/forces", key=world.admin, contract=False)
    assert wrong.status == 405 and "GET" in wrong.headers["Allow"]
    assert wrong.content_type == "application/problem+json"


async def test_ids_that_are_not_uuids_are_404(world: World) -> None:
    reply = await world.api.get("/v1/sites/not-a-uuid", key=world.provider)
    assert reply.status == 404
