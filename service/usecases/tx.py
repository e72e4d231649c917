"""The transaction a use case runs in, and how a read is audited in it (a change records
through service.usecases.changes)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from service.db import Connection
from service.domain.access import Principal
from service.domain.stays import Policy
from service.queries import records
from service.vocab import AuditAction, ObjectType

# The settings' defaults: for tools and tests that make a Tx without the service's settings.
DEFAULT_POLICY = Policy()


@dataclass(frozen=True)
class ReadTx:
    """A unit of work that only reads: its connection, who acts, when (the injectable clock's
    one reading) and which request asked. It has no way to record anything: a use case that
    writes takes a `Tx`, and mypy refuses a `ReadTx` where a `Tx` is asked for.

    `who` is None for the service itself (`on_behalf` names it: the expiry job is "system",
    `pos` commands are "cli").
    """

    conn: Connection
    at: datetime
    who: Principal | None
    request_id: str | None = None
    on_behalf: str = "system"
    # The rules' knobs (caps, lifetimes, lead times, budgets, staleness), from the settings.
    policy: Policy = DEFAULT_POLICY

    @property
    def caller(self) -> Principal:
        """The calling key; use cases reached only through the API may rely on one."""
        if self.who is None:
            raise TypeError("this use case needs a caller")
        return self.who

    @property
    def actor(self) -> str:
        return self.who.actor if self.who is not None else self.on_behalf


@dataclass(frozen=True)
class Tx(ReadTx):
    """A unit of work in a transaction, and the only way to record what happened in it: the
    timestamps it writes are all `at`."""

    async def audit(
        self,
        action: AuditAction,
        object_type: ObjectType,
        object_id: UUID | str,
        fields: Iterable[str] = (),
    ) -> None:
        """An audit row: who did what to which object, and which fields (names only). For
        reads: a change records through service.usecases.changes.record, with its history and
        events."""
        await self.audit_many(action, object_type, [(object_id, fields)])

    async def audit_many(
        self,
        action: AuditAction,
        object_type: ObjectType,
        objects: Sequence[tuple[UUID | str, Iterable[str]]],
    ) -> None:
        """One audit row per object, in one round trip (a list read: one per booking shown)."""
        who = self.who
        await records.audit(
            self.conn,
            [
                (
                    self.at,
                    None if who is None else who.key_id,
                    self.on_behalf if who is None else who.role,
                    None if who is None else who.scope,
                    self.request_id,
                    action,
                    object_type,
                    str(object_id),
                    sorted(fields),
                )
                for object_id, fields in objects
            ],
        )


@asynccontextmanager
async def writing(
    conn: Connection,
    *,
    at: datetime,
    who: Principal | None,
    request_id: str | None = None,
    on_behalf: str = "system",
    policy: Policy = DEFAULT_POLICY,
) -> AsyncIterator[Tx]:
    """A transaction (or a savepoint, when `conn` is already in one): everything done and
    recorded through the Tx commits together or not at all."""
    async with conn.transaction():
        yield Tx(conn, at, who, request_id, on_behalf, policy)
