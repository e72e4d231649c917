"""Each role's allowed and forbidden actions (SPEC section 4), against the real service.

A verb the role lacks is 403; another provider's object is 404 (its existence is not revealed);
no key or a bad key is 401.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import yaml
from aiohttp import web
from multidict import CIMultiDict

from service.db import Pool
from service.middlewares import authorize
from service.routes import route_roles
from tests.conftest import AppFactory
from tests.support.api import SPEC_PATH
from tests.support.world import World, bed_body, booking_body, site_body, unique


@dataclass
class Fixture:
    world: World
    site: dict[str, Any]
    bed: dict[str, Any]
    block: dict[str, Any]
    spare_key_id: str

    def key(self, who: str) -> str:
        return {
            "admin": self.world.admin,
            "officer": self.world.officer,
            "provider": self.world.provider,
            "other_provider": self.world.other_provider,
            "bad": "pos_not-a-real-key",
        }[who]


async def _fixture(world: World) -> Fixture:
    site = await world.site()
    bed = await world.bed(site["id"])
    reply = await world.api.post(
        f"/v1/sites/{site['id']}/blocks",
        {
            "bed_id": bed["id"],
            "start": "2031-03-01T00:00:00Z",
            "end": "2031-03-02T00:00:00Z",
            "reason": "deep clean",
        },
        key=world.provider,
    )
    assert reply.status == 201
    spare = await world.api.post(
        "/v1/api-keys", {"name": unique("spare"), "role": "admin"}, key=world.admin
    )
    return Fixture(world, site, bed, reply.body, spare.body["id"])


def _request(f: Fixture, action: str) -> tuple[str, str, Any]:
    site, bed, block = f.site["id"], f.bed["id"], f.block["id"]
    window = {"start": "2031-01-01T00:00:00Z", "end": "2031-01-08T00:00:00Z"}
    return {
        "list forces": ("GET", "/v1/forces", None),
        "create force": ("POST", "/v1/forces", {"code": unique("x"), "name": "X Police"}),
        "list providers": ("GET", "/v1/providers", None),
        "create provider": ("POST", "/v1/providers", {"name": unique("P")}),
        "read provider": ("GET", f"/v1/providers/{f.world.provider_id}", None),
        "list keys": ("GET", "/v1/api-keys", None),
        "create key": ("POST", "/v1/api-keys", {"name": unique("k"), "role": "admin"}),
        "revoke key": ("DELETE", f"/v1/api-keys/{f.spare_key_id}", None),
        "list sites": ("GET", "/v1/sites", None),
        "create site": ("POST", "/v1/sites", site_body()),
        "read site": ("GET", f"/v1/sites/{site}", None),
        "patch site": ("PATCH", f"/v1/sites/{site}", {"status": "paused"}),
        "list beds": ("GET", f"/v1/sites/{site}/beds", None),
        "create bed": ("POST", f"/v1/sites/{site}/beds", bed_body()),
        "patch bed": ("PATCH", f"/v1/sites/{site}/beds/{bed}", {"in_service": False}),
        "delete bed": ("DELETE", f"/v1/sites/{site}/beds/{bed}", None),
        "list blocks": ("GET", f"/v1/sites/{site}/blocks", None),
        "create block": (
            "POST",
            f"/v1/sites/{site}/blocks",
            {"bed_id": bed, **window, "reason": "painting"},
        ),
        "delete block": ("DELETE", f"/v1/sites/{site}/blocks/{block}", None),
        "occupancy": (
            "GET",
            f"/v1/sites/{site}/occupancy?start={window['start']}&end={window['end']}",
            None,
        ),
    }[action]


# action: expected status for admin, officer, own provider, another provider
MATRIX = {
    "list forces": (200, 200, 200, 200),
    "create force": (201, 403, 403, 403),
    "list providers": (200, 200, 200, 200),
    "create provider": (201, 403, 403, 403),
    "read provider": (200, 200, 200, 200),
    "list keys": (200, 403, 403, 403),
    "create key": (201, 403, 403, 403),
    "revoke key": (204, 403, 403, 403),
    "list sites": (200, 403, 200, 200),
    "create site": (403, 403, 201, 201),
    "read site": (200, 403, 200, 404),
    "patch site": (403, 403, 200, 404),
    "list beds": (200, 403, 200, 404),
    "create bed": (403, 403, 201, 404),
    "patch bed": (403, 403, 200, 404),
    "delete bed": (403, 403, 409, 404),
    "list blocks": (200, 403, 200, 404),
    "create block": (403, 403, 201, 404),
    "delete block": (403, 403, 204, 404),
    "occupancy": (200, 403, 200, 404),
}
ROLES = ("admin", "officer", "provider", "other_provider")


@pytest.mark.parametrize("action", sorted(MATRIX))
@pytest.mark.parametrize("who", ROLES)
async def test_role_matrix(world: World, action: str, who: str) -> None:
    f = await _fixture(world)
    method, path, body = _request(f, action)
    expected = MATRIX[action][ROLES.index(who)]
    reply = await world.api.request(method, path, json_body=body, key=f.key(who))
    assert reply.status == expected, reply.body
    if expected >= 400:
        assert reply.content_type == "application/problem+json"


SNAPSHOT = """
SELECT (SELECT count(*) FROM force), (SELECT count(*) FROM provider),
       (SELECT count(*) FROM api_key WHERE revoked_at IS NULL), (SELECT count(*) FROM site),
       (SELECT count(*) FROM bed WHERE removed_at IS NULL), (SELECT count(*) FROM allocation),
       (SELECT sum(version) FROM site)
"""


@pytest.mark.parametrize("action", sorted(MATRIX))
@pytest.mark.parametrize("who", [None, "bad"])
async def test_no_key_or_bad_key_is_401_and_changes_nothing(
    world: World, db: Pool, action: str, who: str | None
) -> None:
    f = await _fixture(world)
    method, path, body = _request(f, action)
    async with db.acquire() as conn:
        before = tuple(await conn.fetchrow(SNAPSHOT))
    reply = await world.api.request(
        method, path, json_body=body, key=None if who is None else f.key(who)
    )
    assert reply.status == 401
    assert reply.problem_type == "unauthorized"
    assert reply.headers["WWW-Authenticate"].startswith("Bearer")
    async with db.acquire() as conn:
        assert tuple(await conn.fetchrow(SNAPSHOT)) == before


async def test_revoked_key_is_refused_at_once(world: World) -> None:
    created = await world.api.post(
        "/v1/api-keys",
        {"name": unique("temp"), "role": "officer", "force": world.force},
        key=world.admin,
    )
    key = created.body["key"]
    assert (await world.api.get("/v1/forces", key=key)).status == 200
    revoked = await world.api.delete(f"/v1/api-keys/{created.body['id']}", key=world.admin)
    assert revoked.status == 204
    assert (await world.api.get("/v1/forces", key=key)).status == 401
    listed = await world.api.all_items("/v1/api-keys", key=world.admin)
    mine = [k for k in listed if k["id"] == created.body["id"]]
    assert mine and mine[0]["revoked_at"] is not None and mine[0]["last_used_at"] is not None


@pytest.mark.parametrize(
    "values",
    [("good", "bad"), ("bad", "good"), ("good", "good"), ("good", "other")],
    ids=["good-then-bad", "bad-then-good", "same-twice", "two-good-keys"],
)
async def test_two_authorization_headers_are_refused(world: World, values: tuple[str, str]) -> None:
    """Which of two keys a request acts as must not depend on which one a parser keeps."""
    chosen = {"good": world.officer, "bad": "pos_not-a-real-key", "other": world.admin}
    headers = CIMultiDict(("Authorization", f"Bearer {chosen[value]}") for value in values)
    async with world.api.client.get("/v1/forces", headers=headers) as resp:
        body = await resp.json(content_type=None)
        assert resp.status == 400, body
        assert resp.content_type == "application/problem+json"
    assert body["errors"] == [{"field": "Authorization", "message": "given more than once"}]


# --- the role check comes first (issue 14 item 10) -------------------------------------------

HTTP_METHODS = ("get", "post", "patch", "delete")


def _operations() -> list[tuple[str, str, frozenset[str]]]:
    """(METHOD, path, roles allowed) for every operation openapi.yaml guards with a key."""
    spec = yaml.safe_load(SPEC_PATH.read_text())
    return [
        (method.upper(), path, frozenset(operation["x-roles"]))
        for path, item in spec["paths"].items()
        for method, operation in item.items()
        if method in HTTP_METHODS and operation.get("security") != []
    ]


FORBIDDEN = [
    pytest.param(method, path, role, id=f"{role}-{method}-{path}")
    for method, path, roles in _operations()
    for role in ("admin", "officer", "provider")
    if role not in roles
]


def _with_ids(path: str) -> str:
    """The path with every id a fresh UUID: a 403 must not depend on what the ids name."""
    return re.sub(r"\{[a-z_]+\}", lambda _: str(uuid.uuid4()), path)


def test_the_contract_forbids_something_to_every_role() -> None:
    assert {role for _, _, role in (p.values for p in FORBIDDEN)} == {
        "admin",
        "officer",
        "provider",
    }


@pytest.mark.parametrize(("method", "path", "role"), FORBIDDEN)
async def test_a_role_without_the_verb_is_403_whatever_the_request(
    world: World, db: Pool, method: str, path: str, role: str
) -> None:
    """403 before the body, the query or the Idempotency-Key is looked at: an invalid request
    is not told what is wrong with it, and a forbidden call leaves nothing to replay."""
    key = {"admin": world.admin, "officer": world.officer, "provider": world.provider}[role]
    url = _with_ids(path)
    invalid: list[dict[str, Any]] = [
        {"params": {"limit": "0", "cursor": "!", "start": "yesterday", "unknown": "x"}},
    ]
    if method in ("POST", "PATCH"):
        invalid += [
            {"json_body": {"not a field": True}},
            {"json_body": [1, 2]},
            {"data": b"{not json", "content_type": "application/json"},
            {"data": b"plain words", "content_type": "text/plain"},
        ]
    for variant in invalid:
        reply = await world.api.request(method, url, key=key, **variant)
        assert reply.status == 403, (variant, reply.body)
        assert reply.problem_type == "forbidden"
    if method == "POST":
        idem = unique("idem")
        for body in ({"first": 1}, {"second": 2}, {"first": 1}):
            reply = await world.api.request(
                method, url, key=key, json_body=body, headers={"Idempotency-Key": idem}
            )
            assert reply.status == 403, (body, reply.body)
            assert "Idempotent-Replayed" not in reply.headers
        async with db.acquire() as conn:
            stored = await conn.fetchval(
                "SELECT count(*) FROM idempotency_key WHERE key = $1", idem
            )
        assert stored == 0


def test_the_route_table_grants_what_the_contract_says() -> None:
    spec = yaml.safe_load(SPEC_PATH.read_text())
    described = {
        (method.upper(), path): (
            None if operation.get("security") == [] else frozenset(operation["x-roles"])
        )
        for path, item in spec["paths"].items()
        for method, operation in item.items()
        if method in HTTP_METHODS
    }
    routed = {
        (method, path): None if roles is None else frozenset(str(role) for role in roles)
        for (method, path), roles in route_roles().items()
        if method != "HEAD"
    }
    assert routed == described


async def test_a_route_that_names_no_roles_is_refused_to_every_role(
    make_api: AppFactory, db: Pool
) -> None:
    async def secret(request: web.Request) -> web.Response:
        raise AssertionError("reached a route that names no roles")

    api = await make_api(
        customise=lambda app: app.router.add_get("/v1/undeclared", secret),
        check_contract=False,
    )
    world = await World.create(api, db)
    for key in (world.admin, world.officer, world.provider):
        reply = await api.get("/v1/undeclared", key=key)
        assert (reply.status, reply.problem_type) == (403, "forbidden")


def _valid_request(f: Fixture, booking_id: str, method: str, path: str) -> tuple[str, Any]:
    """A request to the operation that its allowed roles would have carried out."""
    site, bed, block = f.site["id"], f.bed["id"], f.block["id"]
    window = {"start": "2031-01-01T00:00:00Z", "end": "2031-01-08T00:00:00Z"}
    start = datetime.now(UTC) + timedelta(hours=2)
    url = path.format(
        site_id=site, bed_id=bed, block_id=block, key_id=f.spare_key_id, booking_id=booking_id
    )
    bodies: dict[tuple[str, str], Any] = {
        ("POST", "/v1/forces"): {"code": unique("x"), "name": "X Police"},
        ("POST", "/v1/providers"): {"name": unique("P")},
        ("POST", "/v1/api-keys"): {"name": unique("k"), "role": "admin"},
        ("POST", "/v1/sites"): site_body(),
        ("PATCH", "/v1/sites/{site_id}"): {"status": "paused"},
        ("POST", "/v1/sites/{site_id}/beds"): bed_body(),
        ("PATCH", "/v1/sites/{site_id}/beds/{bed_id}"): {"in_service": False},
        ("POST", "/v1/sites/{site_id}/blocks"): {"bed_id": bed, **window, "reason": "paint"},
        ("POST", "/v1/bookings"): booking_body(site, start),
        ("POST", "/v1/bookings/{booking_id}/decline"): {"reason_code": "site_full"},
        ("POST", "/v1/bookings/{booking_id}/cancel"): {"reason_code": "booked_in_error"},
        ("POST", "/v1/bookings/{booking_id}/extend"): {
            "end": (start + timedelta(hours=30)).isoformat()
        },
        ("POST", "/v1/bookings/{booking_id}/feedback"): {"consent": True, "felt_safe": 4},
    }
    queries = {
        "/v1/sites/{site_id}/occupancy": f"?start={window['start']}&end={window['end']}",
        "/v1/availability": f"?end={(start + timedelta(hours=24)).isoformat()}".replace("+", "%2B"),
    }
    return url + queries.get(path, ""), bodies.get((method, path))


@pytest.mark.parametrize(("method", "path", "role"), FORBIDDEN)
async def test_the_use_cases_refuse_what_the_route_table_refuses(
    make_api: AppFactory, db: Pool, method: str, path: str, role: str
) -> None:
    """Defence in depth: with the route table's door taken away, each use case still answers
    403 to every role the table refuses, for a request it would otherwise carry out."""
    api = await make_api(customise=lambda app: app.middlewares.remove(authorize))
    f = await _fixture(await World.create(api, db))
    booking = await f.world.book(f.site["id"], datetime.now(UTC) + timedelta(hours=2))
    url, body = _valid_request(f, booking["id"], method, path)
    reply = await api.request(method, url, json_body=body, key=f.key(role))
    assert (reply.status, reply.problem_type) == (403, "forbidden"), reply.body
