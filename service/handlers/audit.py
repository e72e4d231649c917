"""GET /v1/audit: the audit log, for admins."""

from __future__ import annotations

from aiohttp import web

from service import paging
from service.errors import ValidationProblem
from service.handlers.common import json_response, read_query, reading
from service.models import AuditEntry, AuditQuery, Page
from service.usecases.audit import AuditFilter, read_audit

BIGINT_MAX = 2**63 - 1


def _after(cursor: str | None) -> int | None:
    """A cursor is the last row's id; one that does not hold an id is not ours."""
    position = paging.decode_text(cursor)
    if position is None:
        return None
    if not (position.isascii() and position.isdigit()) or int(position) > BIGINT_MAX:
        raise ValidationProblem(
            "cursor is not one this service issued",
            errors=[{"field": "cursor", "message": "not a cursor this service issued"}],
        )
    return int(position)


async def list_audit(request: web.Request) -> web.Response:
    query = read_query(request, AuditQuery)
    filters = AuditFilter(
        booking_id=query.booking_id,
        object_type=query.object_type,
        object_id=query.object_id,
        key_id=query.key_id,
        since=query.since,
        until=query.until,
    )
    async with reading(request) as tx:
        rows = await read_audit(tx, filters, _after(query.cursor), query.limit + 1)
    items, cursor = paging.split_page(rows, query.limit, lambda row: paging.encode(row["id"]))
    return json_response(
        Page[AuditEntry](
            items=[AuditEntry.model_validate(dict(r)) for r in items], next_cursor=cursor
        )
    )
