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
from service.queries import records
from service.vocab import AuditAction, ObjectType


@dataclass(frozen=True)
class Tx:
    """One unit of work: its connection, who acts, when (the injectable clock's one reading,
    used for every timestamp the work writes) and which request asked.

    `who` is None for the service itself (`on_behalf` names it: the expiry job is "system",
    `pos` commands are "cli"). A Tx opened by `reading()` has no transaction and records
    nothing: recording on it is a programming error.
    """

    conn: Connection
    at: datetime
    who: Principal | None
    request_id: str | None = None
    on_behalf: str = "system"
    writable: bool = True

    @property
    def caller(self) -> Principal:
        """The calling key; use cases reached only through the API may rely on one."""
        assert self.who is not None, "this use case needs a caller"
        return self.who

    @property
    def actor(self) -> str:
        return self.who.actor if self.who is not None else self.on_behalf

    def _writing(self) -> None:
        assert self.writable, "a read-only Tx records nothing"

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
        self._writing()
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
) -> AsyncIterator[Tx]:
    """A transaction (or a savepoint, when `conn` is already in one): everything done and
    recorded through the Tx commits together or not at all."""
    async with conn.transaction():
        yield Tx(conn, at, who, request_id, on_behalf)


def reading(
    conn: Connection, *, at: datetime, who: Principal | None, request_id: str | None = None
) -> Tx:
    """For use cases that only read what is not personal: no transaction, nothing recorded."""
    return Tx(conn, at, who, request_id, writable=False)
