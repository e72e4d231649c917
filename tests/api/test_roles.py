"""Each role's allowed and forbidden actions (SPEC section 4), against the real service.

A verb the role lacks is 403; another provider's object is 404 (its existence is not revealed);
no key or a bad key is 401.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from multidict import CIMultiDict

from service.db import Pool
from tests.support.world import World, bed_body, site_body, unique


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
async def test_two_authorization_headers_are_refused(
    world: World, values: tuple[str, str]
) -> None:
    """Which of two keys a request acts as must not depend on which one a parser keeps."""
    chosen = {"good": world.officer, "bad": "pos_not-a-real-key", "other": world.admin}
    headers = CIMultiDict(("Authorization", f"Bearer {chosen[value]}") for value in values)
    async with world.api.client.get("/v1/forces", headers=headers) as resp:
        body = await resp.json(content_type=None)
        assert resp.status == 400, body
        assert resp.content_type == "application/problem+json"
    assert body["errors"] == [
        {"field": "Authorization", "message": "given more than once"}
    ]
