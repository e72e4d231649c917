"""GET /v1/audit (admins only): its filters, its paging, who may read it; and the rows that
reference data, API keys, `pos api-key create` and `pos purge` write."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from service import paging
from service.db import Pool
from service.usecases import tx
from service.vocab import AuditAction, ObjectType
from tests.support.clock import ManualClock
from tests.support.process import pos, pos_env
from tests.support.world import World, unique


async def _rows(world: World, **params: Any) -> list[dict[str, Any]]:
    return await world.api.all_items("/v1/audit", key=world.admin, params=params)


async def _key_id(world: World, secret: str) -> str:
    keys = await world.api.all_items("/v1/api-keys", key=world.admin)
    (found,) = [k for k in keys if secret.startswith(k["prefix"])]
    return str(found["id"])


async def _write(
    db: Pool, at: datetime, object_type: ObjectType, object_id: str, count: int = 1
) -> None:
    """Audit rows as the service's own jobs write them (no key, no request)."""
    async with db.acquire() as conn, tx.writing(conn, at=at, who=None) as unit:
        for _ in range(count):
            await unit.audit(AuditAction.UPDATE, object_type, object_id, ["status"])


async def test_reference_data_and_keys_are_audited_with_the_callers_request(
    world: World, clock: ManualClock
) -> None:
    admin_id = await _key_id(world, world.admin)
    code = unique("a")
    created = await world.api.post(
        "/v1/forces",
        {"code": code, "name": "Audit Police"},
        key=world.admin,
        headers={"X-Request-ID": "audit-force-1"},
    )
    assert created.status == 201
    (row,) = await _rows(world, object_type="force", object_id=code)
    assert row == {
        "id": row["id"],
        "at": clock.now().isoformat().replace("+00:00", "Z"),
        "key_id": admin_id,
        "role": "admin",
        "scope": None,
        "request_id": "audit-force-1",
        "action": "create",
        "object_type": "force",
        "object_id": code,
        "fields": ["code", "name"],
    }

    provider = await world.api.post("/v1/providers", {"name": unique("P")}, key=world.admin)
    (row,) = await _rows(world, object_type="provider", object_id=provider.body["id"])
    assert (row["action"], row["fields"]) == ("create", ["name"])
    assert row["request_id"] == provider.headers["X-Request-ID"]

    key = await world.api.post(
        "/v1/api-keys",
        {"name": unique("k"), "role": "officer", "force": world.force},
        key=world.admin,
    )
    key_id = key.body["id"]
    for _ in range(2):
        assert (await world.api.delete(f"/v1/api-keys/{key_id}", key=world.admin)).status == 204
    rows = await _rows(world, object_type="api_key", object_id=key_id)
    # Revoking a revoked key changes nothing, so it records nothing.
    assert [(r["action"], r["fields"]) for r in rows] == [
        ("create", ["force", "name", "role"]),
        ("revoke", ["revoked_at"]),
    ]
    assert {r["key_id"] for r in rows} == {admin_id}

    # A refused change leaves no row.
    again = await world.api.post("/v1/forces", {"code": code, "name": "Again"}, key=world.admin)
    assert again.status == 409
    assert len(await _rows(world, object_type="force", object_id=code)) == 1


async def test_filters_apply_together(world: World, db: Pool) -> None:
    booking, site = str(uuid.uuid4()), str(uuid.uuid4())
    start = datetime(2031, 5, 1, tzinfo=UTC)
    await _write(db, start, ObjectType.BOOKING, booking)
    await _write(db, start + timedelta(hours=1), ObjectType.BOOKING, booking)
    await _write(db, start + timedelta(hours=2), ObjectType.SITE, site)
    await _write(db, start, ObjectType.SITE, booking)  # another type, the same id

    by_booking = await _rows(world, booking_id=booking)
    assert [(r["object_type"], r["object_id"]) for r in by_booking] == [("booking", booking)] * 2
    assert by_booking == await _rows(world, object_type="booking", object_id=booking)
    assert by_booking == await _rows(world, booking_id=booking, object_type="booking")
    assert await _rows(world, booking_id=booking, object_type="site") == []
    assert await _rows(world, booking_id=booking, object_id=site) == []
    assert len(await _rows(world, object_id=booking)) == 3

    assert by_booking[0]["role"] == "system" and by_booking[0]["key_id"] is None
    since = await _rows(world, booking_id=booking, since="2031-05-01T01:00:00Z")
    assert [r["at"] for r in since] == ["2031-05-01T01:00:00Z"]
    # `until` is exclusive; offsets are honoured.
    until = await _rows(world, booking_id=booking, until="2031-05-01T02:00:00+01:00")
    assert [r["at"] for r in until] == ["2031-05-01T00:00:00Z"]
    window = await _rows(
        world, object_id=site, since="2031-05-01T02:00:00Z", until="2031-05-01T02:00:01Z"
    )
    assert [r["object_type"] for r in window] == ["site"]
    assert await _rows(world, object_id=site, since="2031-05-01T03:00:00Z") == []


async def test_key_id_finds_what_a_key_did_and_reading_is_not_audited(world: World) -> None:
    key = await world.api.post(
        "/v1/api-keys", {"name": unique("k"), "role": "admin"}, key=world.admin
    )
    secret = key.body["key"]
    code = unique("k")
    assert (
        await world.api.post("/v1/forces", {"code": code, "name": "K"}, key=secret)
    ).status == 201
    for _ in range(3):
        assert (await world.api.get("/v1/audit", key=secret)).status == 200
    rows = await _rows(world, key_id=key.body["id"])
    assert [(r["action"], r["object_type"], r["object_id"]) for r in rows] == [
        ("create", "force", code)
    ]


async def test_pages_follow_the_log_in_order(world: World, db: Pool) -> None:
    site = str(uuid.uuid4())
    await _write(db, datetime(2031, 6, 1, tzinfo=UTC), ObjectType.SITE, site, count=5)
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        reply = await world.api.get(
            "/v1/audit",
            key=world.admin,
            params={"object_id": site, "limit": 2, "cursor": cursor},
        )
        assert reply.status == 200
        pages += 1
        seen += [r["id"] for r in reply.body["items"]]
        cursor = reply.body["next_cursor"]
        if cursor is None:
            break
    assert pages == 3 and len(seen) == 5
    assert [int(i) for i in seen] == sorted(int(i) for i in seen)


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"object_type": "planet"}, "object_type"),
        ({"booking_id": "not-a-uuid"}, "booking_id"),
        ({"key_id": "1"}, "key_id"),
        ({"since": "2031-01-01T00:00:00"}, "since"),
        ({"until": "yesterday"}, "until"),
        ({"limit": 0}, "limit"),
        ({"limit": 201}, "limit"),
        ({"object_id": "\u202e"}, "object_id"),
        ({"cursor": "bm90IGEgY3Vyc29y"}, "cursor"),
        ({"cursor": paging.encode("abc")}, "cursor"),  # a cursor's shape, but no row id
        ({"cursor": paging.encode("-1")}, "cursor"),
        ({"cursor": paging.encode("9" * 20)}, "cursor"),  # beyond any bigint
        ({"cursor": paging.encode(datetime(2031, 1, 1, tzinfo=UTC), uuid.uuid4())}, "cursor"),
        ({"colour": "red"}, "colour"),
    ],
)
async def test_bad_filters_are_400_naming_the_field(
    world: World, params: dict[str, Any], field: str
) -> None:
    reply = await world.api.get("/v1/audit", key=world.admin, params=params)
    assert reply.status == 400, reply.body
    assert field in reply.field_names()


@pytest.mark.parametrize("who", ["officer", "provider"])
async def test_only_admins_read_the_log(world: World, who: str) -> None:
    key = world.officer if who == "officer" else world.provider
    reply = await world.api.get("/v1/audit", key=key)
    assert reply.status == 403
    assert reply.problem_type == "forbidden"
    assert (await world.api.get("/v1/audit")).status == 401


@pytest.mark.slow
async def test_cli_keys_are_audited_as_cli(world: World, database_dsn: str) -> None:
    env = pos_env(DATABASE_URL=database_dsn)
    code, out, err = await pos(
        "api-key", "create", "--role", "officer", "--force", world.force, "--name", "cli", env=env
    )
    assert code == 0, err
    assert out.startswith("pos_")  # the key alone on stdout; what was made on stderr
    key_id = err.split("created officer key ", 1)[1].split()[0]
    code, _, err = await pos("api-key", "revoke", key_id, env=env)
    assert code == 0, err
    rows = await _rows(world, object_type="api_key", object_id=key_id)
    assert [(r["action"], r["role"], r["key_id"], r["scope"], r["request_id"]) for r in rows] == [
        ("create", "cli", None, None, None),
        ("revoke", "cli", None, None, None),
    ]


@pytest.mark.slow
async def test_purge_records_one_erase_per_booking_and_keeps_earlier_rows(
    world: World, db: Pool, clock: ManualClock, database_dsn: str
) -> None:
    site = await world.site()
    await world.bed(site["id"])
    ended = await world.book(site["id"], clock.now(), notes="needs a ground floor room")
    await world.act(ended["id"], "cancel", reason="no longer needed")
    async with db.acquire() as conn:
        await conn.execute(
            "UPDATE allocation SET updated_at = updated_at - interval '91 days',"
            " ended_at = ended_at - interval '91 days' WHERE id = $1",
            uuid.UUID(ended["id"]),
        )
    before = await _rows(world, booking_id=ended["id"])

    code, _, err = await pos("purge", env=pos_env(DATABASE_URL=database_dsn))
    assert code == 0, err

    after = await _rows(world, booking_id=ended["id"])
    assert after[: len(before)] == before
    (erase,) = after[len(before) :]
    assert erase["action"] == "erase"
    assert (erase["role"], erase["key_id"], erase["request_id"]) == ("cli", None, None)
    # The cancellation's free-text reason went with the personal fields.
    assert erase["fields"] == ["history.reason", "notes", "officer_collar", "person_ref"]
    # Erased once: a second purge finds nothing left to erase for it.
    assert (await pos("purge", env=pos_env(DATABASE_URL=database_dsn)))[0] == 0
    assert await _rows(world, booking_id=ended["id"]) == after
    shown = (await world.api.get(f"/v1/bookings/{ended['id']}", key=world.admin)).body
    assert [(step["reason_code"], step["reason"]) for step in shown["history"]][-1] == (
        "other",
        None,
    )
