"""GET /v1/audit: the audit log, for admins."""

from __future__ import annotations

from aiohttp import web

from service import paging
from service.handlers.common import json_response, read_query, reading
from service.models import AuditEntry, AuditQuery, Page
from service.usecases.audit import AuditFilter, read_audit


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
        rows = await read_audit(tx, filters, paging.decode_row_id(query.cursor), query.limit + 1)
    items, cursor = paging.split_page(rows, query.limit, lambda row: paging.encode(row["id"]))
    return json_response(
        Page[AuditEntry](
            items=[AuditEntry.model_validate(dict(r)) for r in items], next_cursor=cursor
        )
    )
