"""GET /v1/audit: the audit log, for admins."""

from __future__ import annotations

from aiohttp import web

from service import paging
from service.handlers.common import json_response, read, read_query
from service.models import AuditEntry, AuditQuery, Page
from service.usecases.audit import AuditFilter, read_audit
from service.usecases.uow import UseCase


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
    after = paging.decode_row_id(query.cursor)
    page = await read(request, UseCase(read_audit, filters=filters, after=after, limit=query.limit))
    items = [AuditEntry.model_validate(entry, from_attributes=True) for entry in page.items]
    return json_response(Page[AuditEntry](items=items, next_cursor=page.next_cursor))
