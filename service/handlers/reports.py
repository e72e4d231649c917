"""GET /v1/reports/summary: the summary report, as JSON or (Accept: text/csv) as CSV."""

from __future__ import annotations

from aiohttp import web

from service.domain.reports import GroupBy, to_csv, wants_csv
from service.handlers.common import json_response, read, read_query
from service.models import ReportQuery, ReportSummary
from service.usecases.reports import ReportRequest, summary
from service.usecases.uow import UseCase


async def get_report_summary(request: web.Request) -> web.Response:
    query = read_query(request, ReportQuery)
    command = ReportRequest(
        start=query.start,
        end=query.end,
        group_by=GroupBy(query.group_by),
        force=query.force,
        provider=query.provider,
        publishable=query.publishable,
    )
    report = await read(request, UseCase(summary, request=command))
    shown = ReportSummary.model_validate(report)
    if wants_csv(request.headers.get("Accept")):
        return web.Response(
            text=to_csv(shown.model_dump(mode="json")["groups"]),
            content_type="text/csv",
            charset="utf-8",
            headers={"Content-Disposition": 'attachment; filename="report-summary.csv"'},
        )
    return json_response(shown)
