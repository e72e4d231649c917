"""Bad input gets a clear problem+json 4xx that names the field, and changes nothing."""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import yaml
from openapi_core.testing import MockRequest

from service.db import Pool
from service.text import FREE_TEXT_PATTERN, OPTIONAL_TEXT_PATTERN, SINGLE_LINE_PATTERN
from tests.support.api import SPEC_HOST, SPEC_PATH, spec
from tests.support.clock import ManualClock
from tests.support.world import World, bed_body, booking_body, site_body, unique

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


# --- issue 6: malformed input never reaches a 500 -------------------------------------------

NASTY_TEXT = {
    "NUL": "a\u0000b",
    "right-to-left override": "Haven \u202eesuoH",
    "escape sequence": "\u001b[2J\u001b[31mHaven",
    "bell": "Haven\u0007",
    "backspace": "Haven\u0008\u0008",
    "DEL": "Haven\u007f",
    "C1 control": "Haven\u009b2J",
    "isolate": "Haven \u2067x\u2069",
    "lone surrogate": "Haven \ud800",
}


async def _text_targets(
    world: World, clock: ManualClock
) -> list[tuple[str, str, dict[str, Any], str, str]]:
    """(method, path, valid body, field, key) for every text field a client can send."""
    site = await world.site()
    bed = await world.bed(site["id"])
    booking_site = await world.site(booking_mode="request")
    await world.bed(booking_site["id"])
    start = clock.now() + timedelta(hours=1)
    held = await world.book(booking_site["id"], start)
    pending = await world.book(booking_site["id"], start + timedelta(days=3))
    await world.act(pending["id"], "confirm")
    block = {
        "bed_id": bed["id"],
        "start": "2031-01-01T00:00:00Z",
        "end": "2031-01-02T00:00:00Z",
        "reason": "repairs",
    }
    booking = booking_body(booking_site["id"], start + timedelta(days=6))
    booking["notes"] = "fine"
    targets: list[tuple[str, str, dict[str, Any], str, str]] = [
        ("POST", "/v1/forces", {"code": unique("f"), "name": "x"}, "name", world.admin),
        ("POST", "/v1/providers", {"name": unique("p")}, "name", world.admin),
        ("POST", "/v1/api-keys", {"name": "x", "role": "admin"}, "name", world.admin),
        ("POST", f"/v1/sites/{site['id']}/blocks", block, "reason", world.provider),
        ("POST", f"/v1/sites/{site['id']}/beds", bed_body(), "label", world.provider),
        (
            "PATCH",
            f"/v1/sites/{site['id']}/beds/{bed['id']}",
            {"label": "x"},
            "label",
            world.provider,
        ),
        ("POST", f"/v1/bookings/{held['id']}/cancel", {"reason": "x"}, "reason", world.officer),
        (
            "POST",
            f"/v1/bookings/{pending['id']}/decline",
            {"reason": "x"},
            "reason",
            world.provider,
        ),
    ]
    for name in ("name", "address", "area"):
        targets.append(("POST", "/v1/sites", site_body(), name, world.provider))
        targets.append(("PATCH", f"/v1/sites/{site['id']}", {name: "x"}, name, world.provider))
    for name in ("person_ref", "custody_suite", "officer_collar", "notes"):
        targets.append(("POST", "/v1/bookings", booking, name, world.officer))
    return targets


@pytest.mark.parametrize("what", sorted(NASTY_TEXT))
async def test_nul_controls_and_bidi_overrides_are_refused_in_every_text_field(
    world: World, db: Pool, clock: ManualClock, what: str
) -> None:
    for method, path, body, field, key in await _text_targets(world, clock):
        before = await _snapshot(db)
        sent = {**body, field: NASTY_TEXT[what]}
        raw = json.dumps(sent).encode()  # ensure_ascii: the lone surrogate travels as \ud800
        reply = await world.api.request(method, path, data=raw, key=key)
        assert reply.status == 400, (method, path, field, reply.status, reply.body)
        assert reply.problem_type == "validation-error"
        # pydantic's JSON parser refuses an unpaired surrogate escape as invalid JSON.
        named = {"body"} if what == "lone surrogate" else {field}
        assert named <= reply.field_names(), (path, reply.body)
        assert await _snapshot(db) == before, (method, path, field)


async def _snapshot(db: Pool) -> tuple[int, ...]:
    async with db.acquire() as conn:
        row = await conn.fetchrow(SNAPSHOT)
    assert row is not None
    return tuple(row)


SNAPSHOT = """
SELECT (SELECT count(*) FROM force), (SELECT count(*) FROM provider),
       (SELECT count(*) FROM api_key), (SELECT count(*) FROM site),
       (SELECT count(*) FROM bed), (SELECT count(*) FROM allocation),
       (SELECT count(*) FROM booking),
       (SELECT coalesce(sum(version), 0) FROM site), (SELECT coalesce(sum(version), 0) FROM bed)
"""


async def test_free_text_keeps_newlines_and_tabs(world: World, clock: ManualClock) -> None:
    site = await world.site(address="1 Example Street\nLeeds\tLS1 1AA")
    assert site["address"] == "1 Example Street\nLeeds\tLS1 1AA"
    await world.bed(site["id"])
    booking = await world.book(
        site["id"], clock.now() + timedelta(hours=1), notes="line one\n\tline two"
    )
    assert booking["notes"] == "line one\n\tline two"
    cancelled = await world.act(booking["id"], "cancel", reason="plans\nchanged")
    assert cancelled["history"][-1]["reason"] == "plans\nchanged"


@pytest.mark.parametrize("value", ["Haven\nHouse", "Haven\tHouse", "Haven\rHouse"])
async def test_single_line_text_refuses_newlines_tabs_and_returns(
    world: World, db: Pool, value: str
) -> None:
    reply = await world.api.post("/v1/sites", site_body(name=value), key=world.provider)
    assert reply.status == 400, reply.body
    assert reply.field_names() == {"name"}
    assert await _count(db, COUNT_SITES, world.provider_id) == 0


async def test_non_utf8_authorization_is_401_without_a_key(world: World) -> None:
    port = world.api.client.port
    for header in (b"Bearer \xff\xfe", b"Bearer pos_\xc3\x28", b"Bearer caf\xc3\xa9"):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(
            b"GET /v1/sites HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
            b"Authorization: " + header + b"\r\n\r\n"
        )
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), timeout=10)
        writer.close()
        await writer.wait_closed()
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 401 "), answer[:300]
        assert b"application/problem+json" in head
        assert json.loads(body)["status"] == 401


EDGE_TIMES = ["9999-12-31T23:59:59-01:00", "0001-01-01T00:00:00+01:00"]


@pytest.mark.parametrize("edge", EDGE_TIMES)
async def test_timestamps_outside_years_1_to_9999_are_400_everywhere(
    world: World, db: Pool, clock: ManualClock, edge: str
) -> None:
    site = await world.site()
    bed = await world.bed(site["id"])
    start = clock.now() + timedelta(hours=1)
    booking = await world.book(site["id"], start)
    await world.act(booking["id"], "confirm")
    ok_start, ok_end = start.isoformat(), (start + timedelta(hours=2)).isoformat()
    block = {"bed_id": bed["id"], "start": ok_start, "end": ok_end, "reason": "x"}
    calls: list[tuple[str, str, dict[str, Any] | None, dict[str, str] | None, str, str]] = [
        (
            "GET",
            "/v1/availability",
            None,
            {"start": ok_start, "end": ok_end},
            "start",
            world.officer,
        ),
        ("GET", "/v1/availability", None, {"start": ok_start, "end": ok_end}, "end", world.officer),
        ("GET", "/v1/bookings", None, {"updated_since": ok_start}, "updated_since", world.officer),
        (
            "GET",
            f"/v1/sites/{site['id']}/blocks",
            None,
            {"start": ok_start},
            "start",
            world.provider,
        ),
        ("GET", f"/v1/sites/{site['id']}/blocks", None, {"end": ok_end}, "end", world.provider),
        (
            "GET",
            f"/v1/sites/{site['id']}/occupancy",
            None,
            {"start": ok_start, "end": ok_end},
            "start",
            world.provider,
        ),
        (
            "GET",
            f"/v1/sites/{site['id']}/occupancy",
            None,
            {"start": ok_start, "end": ok_end},
            "end",
            world.provider,
        ),
        ("POST", f"/v1/sites/{site['id']}/blocks", block, None, "start", world.provider),
        ("POST", f"/v1/sites/{site['id']}/blocks", block, None, "end", world.provider),
        ("POST", "/v1/bookings", booking_body(site["id"], start), None, "start", world.officer),
        ("POST", "/v1/bookings", booking_body(site["id"], start), None, "end", world.officer),
        (
            "POST",
            f"/v1/bookings/{booking['id']}/extend",
            {"end": ok_end},
            None,
            "end",
            world.officer,
        ),
    ]
    for method, path, body, params, field, key in calls:
        before = await _snapshot(db)
        if body is not None:
            body = {**body, field: edge}
        if params is not None:
            params = {**params, field: edge}
        reply = await world.api.request(method, path, json_body=body, params=params, key=key)
        assert reply.status == 400, (method, path, field, reply.status, reply.body)
        assert field in reply.field_names(), (path, reply.body)
        assert await _snapshot(db) == before


def _cursor(value: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")


def _deep(levels: int) -> str:
    raw = b"[" * levels + b"]" * levels
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


CRAFTED_CURSORS = {
    "non-UUID id": _cursor(["2030-01-01T00:00:00+00:00", "not-a-uuid"]),
    "nested id": _cursor(["2030-01-01T00:00:00+00:00", ["x"]]),
    "object id": _cursor(["2030-01-01T00:00:00+00:00", {"a": 1}]),
    "number time": _cursor([1, str(uuid.uuid4())]),
    "nested": _cursor([["2030-01-01T00:00:00+00:00"], {"id": 1}]),
    "3000 deep": _deep(3000),
    "NUL": _cursor(["\u0000"]),
    "NUL time": _cursor(["2030-01-01T00:00:00+00:00\u0000", str(uuid.uuid4())]),
    "year 1": _cursor(["0001-01-01T00:00:00+01:00", str(uuid.uuid4())]),
    "year 9999": _cursor(["9999-12-31T23:59:59-01:00", str(uuid.uuid4())]),
    "naive": _cursor(["2030-01-01T00:00:00", str(uuid.uuid4())]),
    "three values": _cursor(["2030-01-01T00:00:00+00:00", str(uuid.uuid4()), 1]),
    "bare string": _cursor("2030-01-01T00:00:00+00:00"),
    "text object": _cursor([{"code": "x"}]),
    "surrogate": _cursor(["\ud800"]),
    "not base64": "%%%",
    "not json": base64.urlsafe_b64encode(b"\xff\xfe").decode(),
}


@pytest.mark.parametrize("what", sorted(CRAFTED_CURSORS))
async def test_crafted_cursors_are_400_on_every_list(world: World, what: str) -> None:
    site = await world.site()
    lists = [
        ("/v1/forces", world.admin),
        ("/v1/providers", world.admin),
        ("/v1/api-keys", world.admin),
        ("/v1/sites", world.provider),
        (f"/v1/sites/{site['id']}/beds", world.provider),
        (f"/v1/sites/{site['id']}/blocks", world.provider),
        ("/v1/bookings", world.officer),
    ]
    for path, key in lists:
        reply = await world.api.get(path, key=key, params={"cursor": CRAFTED_CURSORS[what]})
        assert reply.status == 400, (path, reply.status, reply.body)
        assert reply.field_names() == {"cursor"}, (path, reply.body)


async def test_issued_cursors_still_page(world: World) -> None:
    for _ in range(3):
        await world.site()
    sites = await world.api.all_items("/v1/sites", key=world.provider, limit=1)
    assert len(sites) == 3
    forces = await world.api.all_items("/v1/forces", key=world.admin, limit=1)
    assert world.force in {f["code"] for f in forces}


async def test_duplicate_json_keys_are_refused(world: World, db: Pool) -> None:
    before = await _snapshot(db)
    name = unique("key")
    raw = f'{{"name": "{name}", "role": "officer", "force": "{world.force}", "role": "admin"}}'
    reply = await world.api.request("POST", "/v1/api-keys", data=raw.encode(), key=world.admin)
    assert reply.status == 400, reply.body
    assert reply.problem_type == "validation-error"
    assert reply.field_names() == {"role"}
    nested = json.dumps(site_body()).replace('"lat": 53.7997', '"lat": 53.7997, "lat": 1')
    reply = await world.api.request("POST", "/v1/sites", data=nested.encode(), key=world.provider)
    assert reply.status == 400, reply.body
    assert reply.field_names() == {"location.lat"}
    assert await _snapshot(db) == before


async def test_deeply_nested_json_is_400(world: World) -> None:
    for raw in (b"[" * 3000 + b"]" * 3000, b'{"name": ' + b"[" * 10_000 + b"]" * 10_000 + b"}"):
        reply = await world.api.request("POST", "/v1/providers", data=raw, key=world.admin)
        assert reply.status == 400, reply.body
        assert reply.problem_type == "validation-error"


# --- issue 6 item 11: the contract and the service agree -------------------------------------


async def test_integral_numbers_written_with_a_fraction_are_integers(world: World) -> None:
    site = await world.site(max_stay_hours=48.0)
    assert site["max_stay_hours"] == 48
    bed = await world.bed(site["id"], max_dependants=2.0)
    assert bed["max_dependants"] == 2
    reply = await world.api.post("/v1/sites", site_body(max_stay_hours=True), key=world.provider)
    assert reply.status == 400 and reply.field_names() == {"max_stay_hours"}


def _contract_errors(method: str, path: str, body: Any) -> list[Any]:
    request = MockRequest(
        SPEC_HOST,
        method,
        path,
        headers={"Authorization": "Bearer x"},
        data=json.dumps(body).encode(),
        content_type="application/json",
    )
    return list(spec().iter_request_errors(request))


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/providers", {"name": "   "}),
        ("/v1/providers", {"name": "\u00a0\u3000"}),
        ("/v1/sites/x/beds", {"label": " \t ", "room_type": "single"}),
        ("/v1/bookings/x/cancel", {"reason": "\n"}),
        ("/v1/bookings/x/cancel", {}),
        ("/v1/bookings/x/decline", {"reason": None}),
        ("/v1/providers", {"name": "a\u0000b"}),
        ("/v1/providers", {"name": "Haven \u202eesuoH"}),
        ("/v1/providers", {"name": "line\nbreak"}),
    ],
)
async def test_the_contract_refuses_what_the_service_refuses(
    world: World, path: str, body: dict[str, Any]
) -> None:
    assert _contract_errors("POST", path, body), f"openapi.yaml accepts {body!r} for {path}"


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/providers", {"name": "Haven House"}),
        ("/v1/providers", {"name": "Bāile Átha Cliath 北京 🏠"}),
        ("/v1/bookings/x/cancel", {"reason": "plans\n\tchanged"}),
        ("/v1/sites/x/beds", {"label": "Room 1", "room_type": "single", "max_dependants": 2.0}),
    ],
)
async def test_the_contract_accepts_what_the_service_accepts(
    world: World, path: str, body: dict[str, Any]
) -> None:
    assert not _contract_errors("POST", path, body)


async def test_if_match_with_a_list_passes_when_any_tag_matches(world: World) -> None:
    site = await world.site()
    path = f"/v1/sites/{site['id']}"
    reply = await world.api.patch(
        path, {"area": "York"}, key=world.provider, headers={"If-Match": '"7", "1"'}
    )
    assert reply.status == 200, reply.body
    reply = await world.api.patch(
        path, {"area": "Hull"}, key=world.provider, headers={"If-Match": '"1", "3"'}
    )
    assert reply.status == 412, reply.body
    # If-Match compares strongly (RFC 9110 13.1.1): a weak tag never matches.
    reply = await world.api.patch(
        path, {"area": "Hull"}, key=world.provider, headers={"If-Match": 'W/"2"'}
    )
    assert reply.status == 412, reply.body
    reply = await world.api.patch(
        path, {"area": "Hull"}, key=world.provider, headers={"If-Match": '"x",W/"1", "2"'}
    )
    assert reply.status == 200, reply.body


async def test_an_empty_if_match_is_bad_input_not_a_stale_version(world: World) -> None:
    """The contract's If-Match has minLength 1 (issue 17): an empty one names no version at
    all, so it is a 400 naming the header, as a generated client's own check would say."""
    site = await world.site()
    bed = await world.bed(site["id"])
    for method, path, body in (
        ("PATCH", f"/v1/sites/{site['id']}", {"area": "York"}),
        ("PATCH", f"/v1/sites/{site['id']}/beds/{bed['id']}", {"label": "Room 9"}),
        ("DELETE", f"/v1/sites/{site['id']}/beds/{bed['id']}", None),
    ):
        for empty in ("", "  "):
            reply = await world.api.request(
                method, path, key=world.provider, json_body=body, headers={"If-Match": empty}
            )
            assert reply.status == 400, (method, path, reply.body)
            assert reply.field_names() == {"If-Match"}, reply.body
    still = await world.api.get(f"/v1/sites/{site['id']}", key=world.provider)
    assert still.body["area"] == site["area"] and still.body["version"] == site["version"]


def test_the_contract_carries_the_services_text_rules() -> None:
    document = yaml.safe_load(SPEC_PATH.read_text(encoding="utf-8"))
    schemas = document["components"]["schemas"]
    assert schemas["SingleLine"]["pattern"] == SINGLE_LINE_PATTERN
    assert schemas["FreeText"]["pattern"] == FREE_TEXT_PATTERN
    assert schemas["OptionalFreeText"]["pattern"] == OPTIONAL_TEXT_PATTERN
    # Every text field a client sends has a pattern (the text rules, or a stricter one).
    for name, schema in schemas.items():
        if not name.endswith("In") and not name.endswith("Patch"):
            continue
        for field_name, prop in schema.get("properties", {}).items():
            types = prop.get("type")
            if "string" in (types if isinstance(types, list) else [types]):
                assert "pattern" in prop or "format" in prop or "enum" in prop, (name, field_name)


async def test_a_repeated_query_parameter_is_refused(world: World, clock: ManualClock) -> None:
    end = (clock.now() + timedelta(hours=24)).isoformat().replace("+00:00", "Z")
    zone = "avoid_lat=51.3762&avoid_lon=-0.0982"
    auth = {"Authorization": f"Bearer {world.officer}"}
    # Sent as written (the test client's helper would fold repeated names into one).
    for url, field in (
        (f"/v1/availability?end={end}&{zone}&avoid_km=30&avoid_km=1", "avoid_km"),
        (f"/v1/availability?end={end}&end=2020-01-01T00:00:00Z", "end"),
        ("/v1/bookings?limit=5&limit=200", "limit"),
    ):
        async with world.api.client.get(url, headers=auth) as resp:
            body = await resp.json(content_type=None)
            assert resp.status == 400, (url, resp.status, body)
            assert resp.content_type == "application/problem+json"
            assert [e["field"] for e in body["errors"]] == [field]


async def test_a_list_parameter_may_be_repeated_and_a_single_one_may_not(world: World) -> None:
    """Generators send an array as `types=a&types=b` whatever `explode: false` says (issue 17):
    both forms mean the same list, a value named twice either way is refused, and a repeated
    single-valued parameter is still refused rather than resolved."""
    headers = {"Authorization": f"Bearer {world.officer}"}

    async def get(query: str) -> tuple[int, Any]:
        async with world.api.client.get(f"/v1/events?{query}", headers=headers) as resp:
            return resp.status, await resp.json()

    site = await world.site()
    await world.bed(site["id"])
    booking = await world.book(site["id"], datetime.now(UTC))
    await world.act(booking["id"], "confirm")
    comma = await get("types=booking.held,booking.confirmed&limit=500")
    repeated = await get("types=booking.held&types=booking.confirmed&limit=500")
    mixed = await get("types=booking.held&types=booking.confirmed,booking.cancelled&limit=500")
    assert comma[0] == repeated[0] == mixed[0] == 200, (comma, repeated, mixed)
    ids = [[e["id"] for e in body["items"]] for _, body in (comma, repeated, mixed)]
    assert ids[0] == ids[1] == ids[2] and len(ids[0]) >= 2
    assert {e["type"] for e in repeated[1]["items"]} <= {"booking.held", "booking.confirmed"}
    for query in ("types=booking.held&types=booking.held", "types=booking.held,booking.held"):
        status, body = await get(query)
        assert status == 400 and [e["field"] for e in body["errors"]] == ["types"], body
    status, body = await get("types=booking.held&limit=1&limit=2")
    assert status == 400, body
    assert body["errors"] == [{"field": "limit", "message": "given more than once"}]


async def test_a_rule_across_fields_names_the_fields_to_change_everywhere(world: World) -> None:
    """One rule, one field name (issue 17 item 7): "end must be after start" names `end` on
    every operation, a rule over several fields names each of them, never `query` or `body`."""
    site = await world.site()
    bed = await world.bed(site["id"])
    later, earlier = "2031-01-02T00:00:00Z", "2031-01-01T00:00:00Z"
    backwards = {"start": later, "end": earlier}
    soon = datetime.now(UTC) + timedelta(hours=2)
    search_backwards = {"start": soon.isoformat(), "end": (soon - timedelta(hours=1)).isoformat()}
    cases: list[tuple[str, str, str, Any, set[str]]] = [
        ("GET", "/v1/availability", world.officer, search_backwards, {"end"}),
        ("GET", f"/v1/sites/{site['id']}/occupancy", world.provider, backwards, {"end"}),
        ("GET", "/v1/reports/summary", world.admin, backwards, {"end"}),
        (
            "GET",
            "/v1/reports/summary",
            world.admin,
            {"start": "2031-01-01T00:00:00Z", "end": "2031-06-01T00:00:00Z"},
            {"end"},
        ),
        (
            "POST",
            "/v1/bookings",
            world.officer,
            booking_body(site["id"], datetime.now(UTC), hours=-1),
            {"end"},
        ),
        (
            "POST",
            f"/v1/sites/{site['id']}/blocks",
            world.provider,
            {"bed_id": bed["id"], **backwards, "reason": "repair"},
            {"end"},
        ),
        (
            "GET",
            "/v1/availability",
            world.officer,
            {"end": later, "near_lat": 51.5},
            {"near_lat", "near_lon"},
        ),
        (
            "GET",
            "/v1/availability",
            world.officer,
            {"end": later, "max_km": 5},
            {"max_km", "near_lat", "near_lon"},
        ),
        (
            "GET",
            "/v1/availability",
            world.officer,
            {"end": later, "avoid_km": 5},
            {"avoid_lat", "avoid_lon", "avoid_km"},
        ),
        (
            "POST",
            "/v1/api-keys",
            world.admin,
            {"name": "desk", "role": "officer"},
            {"force"},
        ),
    ]
    for method, path, key, given, fields in cases:
        if method == "GET":
            reply = await world.api.get(path, key=key, params=given)
        else:
            reply = await world.api.post(path, given, key=key)
        assert reply.status == 400, (path, reply.body)
        assert reply.field_names() == fields, (path, given, reply.body)
