"""The summary report's rules (issue 10): which figures a grouping can attribute, suppression
for publication, and the CSV layout. Pure: the figures arrive already aggregated."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping
from enum import StrEnum
from typing import Any

from service.vocab import CancelReason, DeclineReason, EmptyCause, NeedsMet


class GroupBy(StrEnum):
    FORCE = "force"
    PROVIDER = "provider"
    AREA = "area"
    MONTH = "month"


# A count from 1 to 4 could pick out a person in a published table.
SUPPRESSED = "<5"
SMALLEST_SHOWN = 5
# A search that found nothing but whose cause was never recorded (before the cause existed).
UNKNOWN_CAUSE = "unknown"
EMPTY_CAUSES = (*EmptyCause, UNKNOWN_CAUSE)
SCORES = ("1", "2", "3", "4", "5")
FEEDBACK_SCALES = ("felt_safe", "treated_with_respect")


def searches_attributable(group_by: GroupBy, provider_scoped: bool) -> bool:
    """Searches belong to the searching key's force and to a time, never to a provider's site
    or an area: under those groupings (or a provider's scope) they are null, not zero."""
    return group_by in (GroupBy.FORCE, GroupBy.MONTH) and not provider_scoped


def offered_attributable(group_by: GroupBy, force_scoped: bool) -> bool:
    """Beds belong to sites, not forces: offered bed-nights (and occupancy) have no force."""
    return group_by != GroupBy.FORCE and not force_scoped


def show_count(n: int, publishable: bool) -> int | str:
    return SUPPRESSED if publishable and 0 < n < SMALLEST_SHOWN else n


def show_measure(value: float | None, stays: int, publishable: bool) -> float | None:
    """A figure built on stays (a median, a percentile, bed-nights used): withheld for
    publication when fewer than five stays make it, unless there were none at all."""
    if value is None:
        return None
    if publishable and 0 < stays < SMALLEST_SHOWN:
        return None
    return value


def occupancy(used: float | None, offered: float | None) -> float | None:
    if used is None or offered is None or offered <= 0:
        return None
    return round(used / offered, 4)


def distribution(
    counts: Mapping[str, int], answers: Iterable[str], publishable: bool
) -> dict[str, int | str]:
    """Every possible answer, in order, with its count (zeros included)."""
    return {str(answer): show_count(counts.get(answer, 0), publishable) for answer in answers}


# --- CSV -----------------------------------------------------------------------------------


def _columns() -> list[tuple[str, tuple[str, ...]]]:
    """(column name, path into a group) in the order the CSV prints them: stable, from the
    vocabularies, so a new code adds a column at its list's end of the block."""
    cols: list[tuple[str, tuple[str, ...]]] = [("key", ("key",))]
    cols += [("searches", ("searches",)), ("searches_empty", ("searches_empty",))]
    cols += [(f"searches_empty_{c}", ("searches_empty_by_cause", c)) for c in EMPTY_CAUSES]
    cols += [(name, (name,)) for name in ("holds", "confirmations", "requests", "accepted")]
    cols += [("declined", ("declined",))]
    cols += [(f"declined_{c}", ("declined_by_reason", c)) for c in DeclineReason]
    cols += [("expiries", ("expiries",)), ("cancellations", ("cancellations",))]
    cols += [(f"cancelled_{c}", ("cancellations_by_reason", c)) for c in CancelReason]
    cols += [(name, (name,)) for name in ("no_shows", "arrivals", "departures")]
    for span in ("hold_to_confirmation_minutes", "hold_to_arrival_minutes"):
        cols += [(f"{span}_{m}", (span, m)) for m in ("median", "p90")]
    cols += [(name, (name,)) for name in ("bed_nights_offered", "bed_nights_used", "occupancy")]
    cols += [(f"feedback_{n}", ("feedback", n)) for n in ("responses", "consented")]
    for scale in FEEDBACK_SCALES:
        cols += [(f"feedback_{scale}_{s}", ("feedback", scale, s)) for s in SCORES]
    cols += [(f"feedback_needs_met_{a}", ("feedback", "needs_met", a)) for a in NeedsMet]
    return cols


COLUMNS = _columns()


def _cell(group: Mapping[str, Any], path: tuple[str, ...]) -> str:
    value: Any = group
    for part in path:
        if value is None:
            return ""
        value = value[part]
    return "" if value is None else str(value)


def to_csv(groups: Iterable[Mapping[str, Any]]) -> str:
    """RFC 4180: a header row, one row per group, CRLF line ends, null as an empty field."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow([name for name, _ in COLUMNS])
    for group in groups:
        writer.writerow([_cell(group, path) for _, path in COLUMNS])
    return out.getvalue()


def wants_csv(accept: str | None) -> bool:
    """Whether the Accept header prefers text/csv to JSON (JSON when it does not say)."""
    if not accept:
        return False
    best: dict[str, float] = {}
    for item in accept.split(","):
        media, *params = (part.strip() for part in item.split(";"))
        quality = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        best[media.lower()] = max(quality, best.get(media.lower(), 0.0))
    csv_q = best.get("text/csv", 0.0)
    json_q = max(best.get("application/json", 0.0), best.get("*/*", 0.0) * 0.999)
    return csv_q > 0 and csv_q > json_q
