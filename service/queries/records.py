"""What happened, recorded in the caller's transaction: booking history, the event outbox and
the audit log. Only service.usecases.changes (a change) and service.usecases.tx.Tx (reads) run
these."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import NamedTuple
from uuid import UUID

from service.db import Connection

# One change's records in one round trip: its step of history, its events and its audit row
# (sql/0022_record_change.sql says which rows, and when each is written).
RECORD_CHANGE = """
SELECT record_change($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16,
                     $17, $18)
"""

INSERT_AUDIT = """
INSERT INTO audit (at, api_key_id, role, scope, request_id, action, object_type, object_id,
                   fields)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
"""


class ChangeRow(NamedTuple):
    """What record_change() writes, as its parameters: who and when, the audit row's parts
    (no object type: nothing audited), a booking's step (no status: no history) and the
    events (a booking's or an alert's type; a site's availability cause)."""

    at: datetime
    actor: str
    api_key_id: UUID | None
    role: str
    scope: str | None
    request_id: str | None
    action: str | None
    object_type: str | None
    object_id: str | None
    fields: Sequence[str]
    booking_id: UUID | None
    status: str | None
    reason: str | None
    reason_code: str | None
    event_type: str | None
    alert_id: UUID | None
    site_id: UUID | None
    cause: str | None


async def record_change(conn: Connection, row: ChangeRow) -> None:
    await conn.execute(RECORD_CHANGE, *row)


async def record_changes(conn: Connection, rows: Sequence[ChangeRow]) -> None:
    """Several changes' records in one pipelined round trip."""
    if rows:
        await conn.executemany(RECORD_CHANGE, rows)


AuditRow = tuple[datetime, UUID | None, str, str | None, str | None, str, str, str, Sequence[str]]


async def audit(conn: Connection, rows: Sequence[AuditRow]) -> None:
    """Several rows in one pipelined round trip (a list read records one per booking shown)."""
    if len(rows) == 1:
        await conn.execute(INSERT_AUDIT, *rows[0])
    elif rows:
        await conn.executemany(INSERT_AUDIT, rows)
