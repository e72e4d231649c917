"""API keys, managed by admins (and by `pos api-key` on the command line): a new key's secret
is returned once and only its hash is kept."""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

import asyncpg

from service import paging
from service.auth import display_prefix, generate_key, hash_key
from service.domain.access import require_role
from service.errors import NotFound, ValidationProblem
from service.paging import Page, Position
from service.queries import api_keys, reference, webhooks
from service.usecases.changes import Change, record, record_all
from service.usecases.results import ApiKeyShown
from service.usecases.tx import ReadTx, Tx
from service.vocab import AuditAction, ObjectType, Role


@dataclass(frozen=True)
class NewKey:
    name: str
    role: Role
    force_code: str | None = None
    provider_id: UUID | None = None


@dataclass(frozen=True)
class IssuedKey:
    api_key: ApiKeyShown
    # The secret: shown to whoever asked, this once, and never stored.
    secret: str


async def issue_key(tx: Tx, key: NewKey) -> IssuedKey:
    """Create a key and audit it. No role check: the API's create_api_key makes it, and so do
    `pos api-key create` and the test bootstrap (whose Tx has no caller)."""
    secret = generate_key()
    row = await api_keys.create(
        tx.conn,
        name=key.name,
        role=key.role,
        force_code=key.force_code,
        provider_id=key.provider_id,
        key_hash=hash_key(secret),
        prefix=display_prefix(secret),
        at=tx.at,
    )
    given = {
        "name": key.name,
        "role": key.role,
        "force": key.force_code,
        "provider_id": key.provider_id,
    }
    await record(tx, Change.of(AuditAction.CREATE, ObjectType.API_KEY, row["id"], given))
    return IssuedKey(_shown(row), secret)


def _shown(row: asyncpg.Record) -> ApiKeyShown:
    return ApiKeyShown.model_validate(dict(row))


async def check_scope_exists(tx: Tx, key: NewKey) -> None:
    """The force or provider a new key acts for must exist (400 naming the field)."""
    if key.force_code is not None and not await reference.force_exists(tx.conn, key.force_code):
        raise ValidationProblem(
            f"no force has the code {key.force_code!r}",
            errors=[{"field": "force", "message": "no such force"}],
        )
    if (
        key.provider_id is not None
        and await reference.get_provider(tx.conn, key.provider_id) is None
    ):
        raise ValidationProblem(
            f"no provider has the id {key.provider_id}",
            errors=[{"field": "provider_id", "message": "no such provider"}],
        )


async def create_api_key(tx: Tx, key: NewKey) -> IssuedKey:
    require_role(tx.caller, Role.ADMIN)
    await check_scope_exists(tx, key)
    return await issue_key(tx, key)


async def list_api_keys(tx: ReadTx, after: Position | None, limit: int) -> Page[ApiKeyShown]:
    require_role(tx.caller, Role.ADMIN)
    rows = await api_keys.list_page(tx.conn, after, limit + 1)
    return paging.page(rows, limit, paging.by_created).map(_shown)


async def revoke_key(tx: Tx, key_id: UUID) -> ApiKeyShown:
    """Revoke a key from `tx.at`, and disable the webhook subscriptions it made; revoking it
    again changes and records nothing. No role check: `pos api-key revoke` calls this too."""
    row = await api_keys.revoke(tx.conn, key_id, tx.at)
    if row is None:
        raise NotFound("API key not found")
    if row["revoked_now"]:
        # Its webhook subscriptions stop too (whoever held the key chose their URLs).
        disabled = await webhooks.disable_for_key(tx.conn, key_id, tx.at)
        await record_all(
            tx,
            [
                Change.of(AuditAction.REVOKE, ObjectType.API_KEY, key_id, {"revoked_at": tx.at}),
                *(
                    # The two columns webhooks.DISABLE_FOR_KEY sets.
                    Change(
                        AuditAction.UPDATE,
                        ObjectType.WEBHOOK,
                        webhook_id,
                        fields=("disabled_reason", "status"),
                    )
                    for webhook_id in disabled
                ),
            ],
        )
    return _shown(row)


async def revoke_api_key(tx: Tx, key_id: UUID) -> ApiKeyShown:
    require_role(tx.caller, Role.ADMIN)
    return await revoke_key(tx, key_id)
