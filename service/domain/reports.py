"""The summary report's rules (issue 10): which figures a grouping can attribute, protection
for publication (issue 14), and the CSV layout. Pure: the figures arrive already aggregated."""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from service.errors import ValidationProblem
from service.vocab import CancelReason, DeclineReason, EmptyCause, NeedsMet


class GroupBy(StrEnum):
    FORCE = "force"
    PROVIDER = "provider"
    AREA = "area"
    MONTH = "month"


# A count from 1 to 4 could pick out a person in a published table: the CSV shows it as this
# text; JSON shows null and names the count in the group's `suppressed` list (issue 17: a
# typed client reads an integer or null, never a number that may be a string).
SUPPRESSED = "<5"
SMALLEST_SHOWN = 5
# Every other published count is a multiple of this, so no sum or difference of published
# cells (across rows, filters or windows) can be a count from 1 to 4.
ROUNDING_BASE = 5
# Publishable windows start on one of these months (UTC) when they span a quarter.
QUARTER_STARTS = (1, 4, 7, 10)
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


def _to_base(value: float) -> int:
    """The nearest multiple of ROUNDING_BASE (halves up)."""
    return ROUNDING_BASE * math.floor(value / ROUNDING_BASE + 0.5)


def show_count(n: int, publishable: bool) -> int | str:
    """A count as shown; for publication 0 stays 0 (nothing happened), 1 to 4 are "<5" and
    the rest the nearest multiple of 5. Each cell is rounded on its own from the exact count:
    a total is not the sum of its rounded parts, and need not be."""
    if not publishable or n == 0:
        return n
    if n < SMALLEST_SHOWN:
        return SUPPRESSED
    return _to_base(n)


def show_measure(value: float | None, stays: int, publishable: bool) -> float | None:
    """A figure built on stays (a median, a percentile): withheld for publication when fewer
    than five stays make it, unless there were none at all."""
    if value is None:
        return None
    if publishable and 0 < stays < SMALLEST_SHOWN:
        return None
    return value


def show_nights(nights: float, stays: int, publishable: bool) -> float | None:
    """Bed-nights used: withheld for publication on fewer than five stays, as a median is,
    and otherwise rounded to a multiple of 5 nights, so that differencing two published
    figures cannot give back the length of one stay."""
    shown = show_measure(nights, stays, publishable)
    if shown is None or not publishable:
        return shown
    return float(_to_base(shown))


def _month_start(at: datetime) -> datetime:
    return datetime(at.year, at.month, 1, tzinfo=UTC)


def _months_after(at: datetime, n: int) -> datetime:
    index = at.year * 12 + at.month - 1 + n
    return datetime(index // 12, index % 12 + 1, 1, tzinfo=UTC)


def require_publication_window(start: datetime, end: datetime) -> None:
    """A publishable report covers one whole calendar month or calendar quarter (UTC): windows
    that overlap by less (down to a second) would give back, by difference, what happened in
    between."""
    start, end = start.astimezone(UTC), end.astimezone(UTC)
    if start != _month_start(start):
        message = "with publishable=true, start must be 00:00 UTC on the first day of a month"
        raise ValidationProblem(message, errors=[{"field": "start", "message": message}])
    allowed = [_months_after(start, 1)]
    if start.month in QUARTER_STARTS:
        allowed.append(_months_after(start, 3))
    if end not in allowed:
        shown = " or ".join(f"{at:%Y-%m-%dT%H:%M:%SZ}" for at in allowed)
        whole = "a whole month or quarter" if len(allowed) > 1 else "a whole month"
        message = (
            f"with publishable=true, end must be {shown} ({whole}: a publishable report"
            " covers one calendar month or quarter, in UTC)"
        )
        raise ValidationProblem(message, errors=[{"field": "end", "message": message}])


def occupancy(used: float | None, offered: float | None) -> float | None:
    if used is None or offered is None or offered <= 0:
        return None
    return round(used / offered, 4)


def withhold(entry: Mapping[str, Any]) -> dict[str, Any]:
    """A group as JSON shows it: every count shown as "<5" becomes null, and its dotted path
    (`holds`, `feedback.felt_safe.3`) is listed, in order, under `suppressed`; null alone means
    the figure does not apply (searches by provider, beds by force)."""
    suppressed: list[str] = []

    def walk(value: Any, path: tuple[str, ...]) -> Any:
        if isinstance(value, Mapping):
            return {str(k): walk(v, (*path, str(k))) for k, v in value.items()}
        if value == SUPPRESSED:
            suppressed.append(".".join(path))
            return None
        return value

    shown: dict[str, Any] = {k: walk(v, (k,)) if k != "key" else v for k, v in entry.items()}
    shown["suppressed"] = suppressed
    return shown


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
    cols += [(name, (name,)) for name in ("security_alerts", "disclosures_without_placement")]
    return cols


COLUMNS = _columns()


# OWASP's rule against CSV injection: a text cell starting with one of these is read by
# spreadsheets as a formula (a leading tab or carriage return may be dropped first).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def neutralise(text: str) -> str:
    """Text a spreadsheet shows as text: a leading single quote where it would run a formula."""
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def _cell(group: Mapping[str, Any], path: tuple[str, ...]) -> str:
    if ".".join(path) in group.get("suppressed", ()):
        return SUPPRESSED
    value: Any = group
    for part in path:
        if value is None:
            return ""
        value = value[part]
    if value is None:
        return ""
    # Only text (a group's key, such as a provider's area, and "<5") can carry a formula: the
    # figures are numbers the report made, and a number stays a number.
    return neutralise(value) if isinstance(value, str) else str(value)


def to_csv(groups: Iterable[Mapping[str, Any]]) -> str:
    """RFC 4180: a header row, one row per group, CRLF line ends, a suppressed count (named in
    the group's `suppressed`) as "<5", null as an empty field, and no cell starting a
    spreadsheet formula."""
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
