"""Reading the audit log: admins only. Reading it is not itself audited (it holds no personal
values, only the names of fields)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from service import paging
from service.domain.access import require_role
from service.paging import Page
from service.queries import audit
from service.usecases.results import AuditShown
from service.usecases.tx import ReadTx
from service.vocab import ObjectType, Role


@dataclass(frozen=True)
class AuditFilter:
    """Every filter is optional and they apply together; `booking_id` is shorthand for
    object_type=booking and object_id=that id. `since` is inclusive, `until` exclusive."""

    booking_id: UUID | None = None
    object_type: ObjectType | None = None
    object_id: str | None = None
    key_id: UUID | None = None
    since: datetime | None = None
    until: datetime | None = None


async def read_audit(
    tx: ReadTx, filters: AuditFilter, after: int | None, limit: int
) -> Page[AuditShown]:
    """Rows in id order (the order they were written), after the row id `after`."""
    require_role(tx.caller, Role.ADMIN)
    object_type, object_id = filters.object_type, filters.object_id
    if filters.booking_id is not None:
        booking = str(filters.booking_id)
        if object_type not in (None, ObjectType.BOOKING) or object_id not in (None, booking):
            return Page([], None)  # the filters apply together; no row is two objects
        object_type, object_id = ObjectType.BOOKING, booking
    rows = await audit.list_page(
        tx.conn,
        object_type=object_type,
        object_id=object_id,
        key_id=filters.key_id,
        since=filters.since,
        until=filters.until,
        after=after,
        limit=limit + 1,
    )
    shown = [AuditShown.model_validate(dict(row)) for row in rows]
    return paging.page(shown, limit, lambda entry: paging.encode(entry.id))
