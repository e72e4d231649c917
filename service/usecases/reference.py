"""Forces and providers: read by every role, written by admins."""

from __future__ import annotations

from uuid import UUID

from service import paging
from service.domain.access import require_role
from service.errors import Conflict, NotFound
from service.paging import Page, Position
from service.queries import reference
from service.usecases.changes import Change, record
from service.usecases.results import ForceShown, ProviderShown
from service.usecases.tx import ReadTx, Tx
from service.vocab import AuditAction, ObjectType, Role


async def create_force(tx: Tx, code: str, name: str) -> ForceShown:
    require_role(tx.caller, Role.ADMIN)
    row = await reference.create_force(tx.conn, code, name, at=tx.at)
    if row is None:
        raise Conflict(f"force {code!r} already exists", slug="already-exists")
    await record(
        tx, Change.of(AuditAction.CREATE, ObjectType.FORCE, code, {"code": code, "name": name})
    )
    return ForceShown.model_validate(dict(row))


async def list_forces(tx: ReadTx, after: str | None, limit: int) -> Page[ForceShown]:
    rows = await reference.list_forces(tx.conn, after, limit + 1)
    page = paging.page(rows, limit, lambda row: paging.encode(row["code"]))
    return page.map(lambda row: ForceShown.model_validate(dict(row)))


async def create_provider(tx: Tx, name: str, duty_phone: str | None = None) -> ProviderShown:
    require_role(tx.caller, Role.ADMIN)
    row = await reference.create_provider(tx.conn, name, at=tx.at, duty_phone=duty_phone)
    if row is None:
        raise Conflict(f"a provider named {name!r} already exists", slug="already-exists")
    given = {"name": name, "duty_phone": duty_phone}
    await record(tx, Change.of(AuditAction.CREATE, ObjectType.PROVIDER, row["id"], given))
    return ProviderShown.model_validate(dict(row))


async def list_providers(tx: ReadTx, after: Position | None, limit: int) -> Page[ProviderShown]:
    rows = await reference.list_providers(tx.conn, after, limit + 1)
    page = paging.page(rows, limit, paging.by_created)
    return page.map(lambda row: ProviderShown.model_validate(dict(row)))


async def get_provider(tx: ReadTx, provider_id: UUID) -> ProviderShown:
    row = await reference.get_provider(tx.conn, provider_id)
    if row is None:
        raise NotFound("provider not found")
    return ProviderShown.model_validate(dict(row))
