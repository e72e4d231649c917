"""GET /v1/alerts: security alerts, for admins (issue 14)."""

from __future__ import annotations

from aiohttp import web

from service import paging
from service.handlers.common import json_response, read, read_query
from service.models import AlertOut, AlertQuery, Page
from service.usecases.alerts import AlertFilter, list_alerts
from service.usecases.uow import UseCase


async def list_security_alerts(request: web.Request) -> web.Response:
    query = read_query(request, AlertQuery)
    filters = AlertFilter(api_key_id=query.key_id, force=query.force, kind=query.kind)
    after = paging.decode_position(query.cursor)
    page = await read(
        request, UseCase(list_alerts, filters=filters, after=after, limit=query.limit)
    )
    items = [AlertOut.model_validate(alert, from_attributes=True) for alert in page.items]
    return json_response(Page[AlertOut](items=items, next_cursor=page.next_cursor))
