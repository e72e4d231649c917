"""The summary report (issue 10): outcomes, unmet demand, capacity used and the person's voice,
per force, provider, area or month, in the caller's scope.

The figures come from a few aggregate statements (service.queries.reports); this module only
folds their grouped rows into the report's shape and applies the publication rules (whole
calendar months or quarters; counts rounded to base 5 with 1 to 4 suppressed: null and named in
the group's `suppressed`, "<5" in the CSV). It reads
no personal field, so the report is the same before and after erasure; it is not audited.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

import asyncpg

from service.domain import reports as rules
from service.domain.access import require_role
from service.domain.reports import GroupBy
from service.queries import reports
from service.usecases.tx import ReadTx
from service.vocab import (
    AlertKind,
    AuditAction,
    BookingStatus,
    CancelReason,
    DeclineReason,
    NeedsMet,
    Role,
)

A = AuditAction


@dataclass(frozen=True)
class ReportRequest:
    start: datetime
    end: datetime
    group_by: GroupBy = GroupBy.FORCE
    force: str | None = None
    provider: UUID | None = None
    publishable: bool = False


def _scope(tx: ReadTx, request: ReportRequest) -> reports.Scope:
    """Admins see everything (narrowed as asked); a provider only its own sites and an officer
    only its own force, whatever they ask: naming another scope is 404, as everywhere."""
    who = tx.caller
    require_role(who, Role.ADMIN, Role.PROVIDER, Role.OFFICER)
    force, provider = who.narrow(request.force, request.provider)
    return reports.Scope(request.start, request.end, request.group_by, force, provider)


def _counts(rows: list[asyncpg.Record], *fields: str) -> dict[Any, dict[tuple[Any, ...], int]]:
    """Grouped rows as {key: {(field values): n}}."""
    folded: dict[Any, dict[tuple[Any, ...], int]] = defaultdict(dict)
    for row in rows:
        folded[row["key"]][tuple(row[f] for f in fields)] = row["n"]
    return folded


def _sum(counts: dict[tuple[Any, ...], int], **match: Any) -> int:
    """The rows of one group whose named fields have these values (a tuple: any of them)."""
    names = list(match)

    def fits(values: tuple[Any, ...]) -> bool:
        for name, value in zip(names, values, strict=True):
            wanted = match[name]
            if isinstance(wanted, tuple) and value not in wanted:
                return False
            if not isinstance(wanted, tuple) and value != wanted:
                return False
        return True

    return sum(n for values, n in counts.items() if fits(values[: len(names)]))


def _by_reason(counts: dict[tuple[Any, ...], int], action: str) -> dict[str, int]:
    return {
        code: n for (act, _status, code), n in counts.items() if act == action and code is not None
    }


def _round(value: Any, places: int = 2) -> float | None:
    return None if value is None else round(float(value), places)


async def summary(tx: ReadTx, request: ReportRequest) -> dict[str, Any]:
    """The report as the API shows it: the window, the grouping and one entry per group."""
    scope = _scope(tx, request)
    publishable = request.publishable
    if publishable:
        rules.require_publication_window(request.start, request.end)
    with_searches = rules.searches_attributable(request.group_by, scope.provider is not None)
    with_offered = rules.offered_attributable(request.group_by, scope.force is not None)

    steps = _counts(await reports.steps(tx.conn, scope), "action", "status", "reason_code")
    spans: dict[Any, dict[str, asyncpg.Record]] = defaultdict(dict)
    for row in await reports.spans(tx.conn, scope):
        spans[row["key"]][row["span"]] = row
    searches = _counts(await reports.searches(tx.conn, scope), "cause") if with_searches else {}
    # Security alerts are for the coordinators, and not for publication.
    with_alerts = (
        tx.caller.role == Role.ADMIN
        and not publishable
        and request.group_by in (GroupBy.FORCE, GroupBy.MONTH)
    )
    alerts = _counts(await reports.alerts(tx.conn, scope), "kind") if with_alerts else {}
    feedback = _counts(await reports.feedback(tx.conn, scope), "question", "answer")
    offered = (
        {r["key"]: r["offered"] for r in await reports.offered(tx.conn, scope)}
        if with_offered
        else {}
    )
    used = {r["key"]: r for r in await reports.used(tx.conn, scope)}

    keys = (
        set(steps) | set(spans) | set(searches) | set(feedback) | set(offered) | set(used)
    ) | set(alerts)

    def count(n: int) -> int | str:
        return rules.show_count(n, publishable)

    def group(key: Any) -> dict[str, Any]:
        s = steps.get(key, {})
        declined = _by_reason(s, A.DECLINE)
        cancelled = _by_reason(s, A.CANCEL)
        entry: dict[str, Any] = {"key": key}
        if with_searches:
            found = searches.get(key, {})
            empty = {cause: n for (cause,), n in found.items() if cause is not None}
            entry["searches"] = count(sum(found.values()))
            entry["searches_empty"] = count(sum(empty.values()))
            entry["searches_empty_by_cause"] = rules.distribution(
                empty, rules.EMPTY_CAUSES, publishable
            )
        else:
            entry["searches"] = entry["searches_empty"] = None
            entry["searches_empty_by_cause"] = None
        entry |= {
            "holds": count(_sum(s, action=A.HOLD)),
            "confirmations": count(
                _sum(s, action=(A.CONFIRM, A.ACCEPT), status=BookingStatus.CONFIRMED)
            ),
            "requests": count(_sum(s, action=A.CONFIRM, status=BookingStatus.PENDING)),
            "accepted": count(_sum(s, action=A.ACCEPT)),
            "declined": count(sum(declined.values())),
            "declined_by_reason": rules.distribution(declined, DeclineReason, publishable),
            "expiries": count(_sum(s, action=A.EXPIRE)),
            "cancellations": count(sum(cancelled.values())),
            "cancellations_by_reason": rules.distribution(cancelled, CancelReason, publishable),
            "no_shows": count(_sum(s, action=A.NO_SHOW)),
            "arrivals": count(_sum(s, action=A.CHECK_IN)),
            "departures": count(_sum(s, action=A.CHECK_OUT)),
        }
        for span in ("confirmation", "arrival"):
            row = spans.get(key, {}).get(span)
            stays = 0 if row is None else row["stays"]
            entry[f"hold_to_{span}_minutes"] = {
                measure: rules.show_measure(
                    None if row is None else _round(row[measure]), stays, publishable
                )
                for measure in ("median", "p90")
            }
        stays_used = used.get(key)
        nights_used = rules.show_nights(
            (None if stays_used is None else _round(stays_used["used"])) or 0.0,
            0 if stays_used is None else stays_used["stays"],
            publishable,
        )
        nights_offered = _round(offered.get(key, 0.0)) if with_offered else None
        entry["bed_nights_offered"] = nights_offered
        entry["bed_nights_used"] = nights_used
        entry["occupancy"] = rules.occupancy(nights_used, nights_offered)
        f = feedback.get(key, {})
        answers = {
            question: {str(a): n for (q, a), n in f.items() if q == question and a is not None}
            for question in (*rules.FEEDBACK_SCALES, "needs_met")
        }
        entry["feedback"] = {
            "responses": count(_sum(f, question="responses")),
            "consented": count(_sum(f, question="consented")),
            **{
                scale: rules.distribution(answers[scale], rules.SCORES, publishable)
                for scale in rules.FEEDBACK_SCALES
            },
            "needs_met": rules.distribution(answers["needs_met"], NeedsMet, publishable),
        }
        raised = alerts.get(key, {})
        entry["security_alerts"] = sum(raised.values()) if with_alerts else None
        entry["disclosures_without_placement"] = (
            _sum(raised, kind=AlertKind.DISCLOSURE_WITHOUT_PLACEMENT) if with_alerts else None
        )
        return rules.withhold(entry)

    return {
        "start": request.start,
        "end": request.end,
        "group_by": request.group_by,
        "publishable": publishable,
        "searches_attributable": with_searches,
        "groups": [group(k) for k in sorted(keys, key=lambda k: (k is None, k or ""))],
        "stale_sites": await _stale_sites(tx, scope, tx.policy.stale_after),
    }


async def _stale_sites(tx: ReadTx, scope: reports.Scope, stale_after: timedelta) -> list[Any]:
    """Sites whose capacity is stale now, longest first: all for admins (one provider's when
    narrowed), a provider's own; none for officers, who manage no capacity."""
    if tx.caller.role == Role.OFFICER:
        return []
    rows = await reports.stale_sites(tx.conn, tx.at, tx.at - stale_after, scope.provider)
    return [dict(row) for row in rows]
