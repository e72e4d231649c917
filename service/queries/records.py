"""What happened, recorded in the caller's transaction: booking history, the event outbox and
the audit log. Only service.usecases.tx.Tx runs these."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from uuid import UUID

from service.db import Connection

INSERT_HISTORY = """
INSERT INTO booking_transition (
    booking_id, action, status, at, actor, api_key_id, reason, reason_code
)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
"""

# A booking's event carries no personal field: ids, state, the window, and who it concerns.
INSERT_BOOKING_EVENT = """
INSERT INTO event (type, booking_id, site_id, force_code, provider_id, data, occurred_at)
SELECT $2, b.id, b.site_id, b.force_code, s.provider_id,
       jsonb_build_object(
           'booking_id', b.id, 'status', a.status, 'site_id', b.site_id,
           'force', b.force_code, 'bed_id', a.bed_id,
           'start', lower(a.period), 'end', upper(a.period)
       ),
       $3
FROM booking b
JOIN allocation a ON a.id = b.id
JOIN site s ON s.id = b.site_id
WHERE b.id = $1
"""

# A site's event names the site and what changed, never its address or location.
INSERT_SITE_EVENT = """
INSERT INTO event (type, site_id, provider_id, data, occurred_at)
SELECT $2, s.id, s.provider_id, jsonb_build_object('site_id', s.id, 'cause', $3::text), $4
FROM site s
WHERE s.id = $1
"""

# A site's event about its capacity as a whole (site.capacity_stale): the site, and when its
# capacity was last confirmed.
INSERT_SITE_CAPACITY_EVENT = """
INSERT INTO event (type, site_id, provider_id, data, occurred_at)
SELECT $2, s.id, s.provider_id,
       jsonb_build_object('site_id', s.id, 'capacity_confirmed_at', s.capacity_confirmed_at), $3
FROM site s
WHERE s.id = $1
"""

# An alert's event names the alert, its kind, the key and its force: never a person.
INSERT_ALERT_EVENT = """
INSERT INTO event (type, data, occurred_at)
SELECT $2, jsonb_build_object(
           'alert_id', a.id, 'kind', a.kind, 'api_key_id', a.api_key_id,
           'force', a.force_code, 'site_id', a.site_id, 'booking_id', a.booking_id
       ), $3
FROM security_alert a
WHERE a.id = $1
"""

INSERT_AUDIT = """
INSERT INTO audit (at, api_key_id, role, scope, request_id, action, object_type, object_id,
                   fields)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
"""


async def history(
    conn: Connection,
    booking_id: UUID,
    action: str,
    status: str,
    at: datetime,
    actor: str,
    api_key_id: UUID | None,
    reason: str | None,
    reason_code: str | None = None,
) -> None:
    await conn.execute(
        INSERT_HISTORY, booking_id, action, status, at, actor, api_key_id, reason, reason_code
    )


async def booking_event(conn: Connection, booking_id: UUID, type_: str, at: datetime) -> None:
    await conn.execute(INSERT_BOOKING_EVENT, booking_id, type_, at)


async def site_event(conn: Connection, site_id: UUID, type_: str, cause: str, at: datetime) -> None:
    await conn.execute(INSERT_SITE_EVENT, site_id, type_, cause, at)


async def site_capacity_event(conn: Connection, site_id: UUID, type_: str, at: datetime) -> None:
    await conn.execute(INSERT_SITE_CAPACITY_EVENT, site_id, type_, at)


async def alert_event(conn: Connection, alert_id: UUID, type_: str, at: datetime) -> None:
    await conn.execute(INSERT_ALERT_EVENT, alert_id, type_, at)


AuditRow = tuple[datetime, UUID | None, str, str | None, str | None, str, str, str, Sequence[str]]


async def audit(conn: Connection, rows: Sequence[AuditRow]) -> None:
    """Several rows in one pipelined round trip (a list read records one per booking shown)."""
    if len(rows) == 1:
        await conn.execute(INSERT_AUDIT, *rows[0])
    elif rows:
        await conn.executemany(INSERT_AUDIT, rows)
