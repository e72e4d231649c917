"""Forces and providers: read by every role, written by admins."""

from __future__ import annotations

from uuid import UUID

import asyncpg

from service.domain.access import require_role
from service.errors import Conflict, NotFound
from service.paging import Position
from service.queries import reference
from service.usecases.changes import Change, record
from service.usecases.tx import Tx
from service.vocab import AuditAction, ObjectType, Role


async def create_force(tx: Tx, code: str, name: str) -> asyncpg.Record:
    require_role(tx.caller, Role.ADMIN)
    row = await reference.create_force(tx.conn, code, name, at=tx.at)
    if row is None:
        raise Conflict(f"force {code!r} already exists", slug="already-exists")
    await record(
        tx, Change.of(AuditAction.CREATE, ObjectType.FORCE, code, {"code": code, "name": name})
    )
    return row


async def list_forces(tx: Tx, after: str | None, limit: int) -> list[asyncpg.Record]:
    return await reference.list_forces(tx.conn, after, limit)


async def create_provider(tx: Tx, name: str, duty_phone: str | None = None) -> asyncpg.Record:
    require_role(tx.caller, Role.ADMIN)
    row = await reference.create_provider(tx.conn, name, at=tx.at, duty_phone=duty_phone)
    if row is None:
        raise Conflict(f"a provider named {name!r} already exists", slug="already-exists")
    given = {"name": name, "duty_phone": duty_phone}
    await record(tx, Change.of(AuditAction.CREATE, ObjectType.PROVIDER, row["id"], given))
    return row


async def list_providers(tx: Tx, after: Position | None, limit: int) -> list[asyncpg.Record]:
    return await reference.list_providers(tx.conn, after, limit)


async def get_provider(tx: Tx, provider_id: UUID) -> asyncpg.Record:
    row = await reference.get_provider(tx.conn, provider_id)
    if row is None:
        raise NotFound("provider not found")
    return row
