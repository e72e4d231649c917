"""Factories: a fresh admin, force, officer, providers and sites for one test."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from service.db import Connection, Pool
from service.usecases import tx
from service.usecases.api_keys import IssuedKey, NewKey, issue_key
from service.vocab import Role
from tests.support.api import Api


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


async def cli_key(
    conn: Connection,
    *,
    name: str,
    role: Role | str,
    force_code: str | None = None,
    provider_id: UUID | None = None,
) -> IssuedKey:
    """A key made as `pos api-key create` makes it (audited as done by "cli")."""
    key = NewKey(name=name, role=Role(role), force_code=force_code, provider_id=provider_id)
    async with tx.writing(conn, at=datetime.now(UTC), who=None, on_behalf="cli") as unit:
        return await issue_key(unit, key)


async def bootstrap_admin(db: Pool) -> str:
    """The first admin key, made as `pos api-key create --role admin` makes it."""
    async with db.acquire() as conn:
        issued = await cli_key(conn, name=unique("admin"), role=Role.ADMIN)
    return issued.secret


def site_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": unique("Site"),
        "address": "1 Example Street, Leeds LS1 1AA",
        "area": "Leeds",
        "location": {"lat": 53.7997, "lon": -1.5492},
        "genders_accepted": ["female"],
        "languages": ["en"],
        "interpreter_on_call": False,
        "booking_mode": "instant",
        "max_stay_hours": 72,
        "phone": "+44 113 496 0000",
    }
    body.update(overrides)
    return body


def bed_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"label": unique("Room"), "room_type": "single"}
    body.update(overrides)
    return body


@dataclass
class World:
    api: Api
    db: Pool
    admin: str
    force: str
    officer: str
    provider_id: str
    provider: str
    other_provider_id: str
    other_provider: str

    @classmethod
    async def create(cls, api: Api, db: Pool) -> World:
        admin = await bootstrap_admin(db)
        force = unique("f")
        reply = await api.post("/v1/forces", {"code": force, "name": f"Force {force}"}, key=admin)
        assert reply.status == 201, reply.body
        officer = await new_key(api, admin, role="officer", force=force)
        provider_id = await new_provider(api, admin)
        provider = await new_key(api, admin, role="provider", provider_id=provider_id)
        other_provider_id = await new_provider(api, admin)
        other_provider = await new_key(api, admin, role="provider", provider_id=other_provider_id)
        return cls(
            api, db, admin, force, officer, provider_id, provider, other_provider_id, other_provider
        )

    async def site(self, key: str | None = None, **overrides: Any) -> dict[str, Any]:
        reply = await self.api.post("/v1/sites", site_body(**overrides), key=key or self.provider)
        assert reply.status == 201, reply.body
        site: dict[str, Any] = reply.body
        return site

    async def book(
        self,
        site_id: str,
        start: datetime,
        hours: float = 24,
        key: str | None = None,
        expect: int = 201,
        **overrides: Any,
    ) -> dict[str, Any]:
        reply = await self.api.post(
            "/v1/bookings",
            booking_body(site_id, start, hours, **overrides),
            key=key or self.officer,
        )
        assert reply.status == expect, reply.body
        result: dict[str, Any] = reply.body
        return result

    async def act(
        self,
        booking_id: str,
        action: str,
        key: str | None = None,
        expect: int = 200,
        **body: Any,
    ) -> dict[str, Any]:
        reply = await self.api.post(
            f"/v1/bookings/{booking_id}/{action}", body or None, key=key or self.officer
        )
        assert reply.status == expect, reply.body
        result: dict[str, Any] = reply.body
        return result

    async def all_bookings(self, key: str | None = None, **params: Any) -> list[Any]:
        return await self.api.all_items("/v1/bookings", key=key or self.officer, params=params)

    async def bed(self, site_id: str, key: str | None = None, **overrides: Any) -> dict[str, Any]:
        reply = await self.api.post(
            f"/v1/sites/{site_id}/beds", bed_body(**overrides), key=key or self.provider
        )
        assert reply.status == 201, reply.body
        bed: dict[str, Any] = reply.body
        return bed


def booking_body(
    site_id: str, start: datetime, hours: float = 24, **overrides: Any
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "site_id": site_id,
        "start": start.isoformat(),
        "end": (start + timedelta(hours=hours)).isoformat(),
        "needs": {"gender": "female"},
        "person_ref": unique("REF"),
        "custody_suite": "Leeds Elland Road",
        "officer_collar": "PC 1234",
    }
    body.update(overrides)
    return body


async def new_provider(api: Api, admin: str) -> str:
    reply = await api.post("/v1/providers", {"name": unique("Provider")}, key=admin)
    assert reply.status == 201, reply.body
    return str(reply.body["id"])


async def new_key(api: Api, admin: str, **body: Any) -> str:
    reply = await api.post("/v1/api-keys", {"name": unique("key"), **body}, key=admin)
    assert reply.status == 201, reply.body
    return str(reply.body["key"])
