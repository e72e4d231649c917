"""schemathesis's stateful phase over the booking lifecycle (issue 17): scenarios that follow
the contract's OpenAPI `links` (availability -> hold -> confirm / accept -> check-in ->
check-out, feedback; site -> beds -> blocks), every check schemathesis has on every step.

Generated data alone never walks a booking: a random window is rarely within the lead time and
a random `site_id` names no site. So the service has seeded sites that fit any needs, each
search window is drawn near now (start within the hour, end a few hours later: inside
MAX_LEAD_HOURS and the sites' `max_stay_hours`), and each call carries the key of the role
that may make it. The availability -> createBooking link carries `site_id`, `start` and `end`,
so the hold is for the window just searched.

Bounded for `make test` (STATEFUL_EXAMPLES scenarios, derandomized); run it longer by hand,
e.g. `STATEFUL_EXAMPLES=200 pytest -s tests/api/test_stateful_contract.py` (prints figures).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import hypothesis
import pytest
import requests
import schemathesis
from hypothesis.errors import Flaky
from schemathesis import GenerationMode
from schemathesis.core.failures import FailureGroup
from schemathesis.engine.errors import is_inconsistent_replay
from schemathesis.generation.stateful.state_machine import APIStateMachine, normalize_name

from service.db import Pool
from service.settings import Settings
from tests.api.test_fuzz_contract import DOCUMENTED_RULES, NO_LIMITS
from tests.conftest import AppFactory
from tests.support.api import SPEC_PATH
from tests.support.clock import ManualClock
from tests.support.world import World

pytestmark = pytest.mark.slow  # stateful: schemathesis walks hundreds of requests

# Scenarios in the lifecycle walk (a third as many in the capacity walk), and the walk goes
# on, up to MAX_SCENARIOS or BUDGET_SECONDS, until a booking has been confirmed and one has
# arrived: how many scenarios that takes depends on which links Hypothesis picks.
EXAMPLES = int(os.environ.get("STATEFUL_EXAMPLES", "20"))
MAX_SCENARIOS = max(EXAMPLES, 100)
BUDGET_SECONDS = 30.0
SUITE = 10
STEPS = 16
# Holds never expire here (the clock stands still), so each seeded site has beds enough for
# every hold the scenarios make.
BEDS = 20

# Two walks, each from its own root (schemathesis would also start from every other POST with
# a random booking or site id: a 404 that spends the scenario's steps; those operations are
# reached by the links instead). The lifecycle walk runs first, so the search ranks the seeded
# sites, not those the capacity walk makes with random genders and beds.
LIFECYCLE = (
    "GET /v1/availability",
    frozenset(
        {
            "searchAvailability",
            "createBooking",
            "getBooking",
            "confirmBooking",
            "cancelBooking",
            "extendBooking",
            "acceptBooking",
            "declineBooking",
            "checkInBooking",
            "checkOutBooking",
            "noShowBooking",
            "createFeedback",
        }
    ),
)
CAPACITY = (
    "POST /v1/sites",
    frozenset(
        {
            "createSite",
            "getSite",
            "updateSite",
            "confirmCapacity",
            "getOccupancy",
            "listBeds",
            "createBed",
            "updateBed",
            "deleteBed",
            "listBlocks",
            "createBlock",
            "deleteBlock",
        }
    ),
)
# Each call carries the key of the role that may make it: the officer's operations are these,
# the provider's all the others (capacity, and accept, decline, check-in, check-out, no-show,
# feedback).
OFFICER = frozenset(
    {
        "searchAvailability",
        "createBooking",
        "getBooking",
        "confirmBooking",
        "cancelBooking",
        "extendBooking",
    }
)

# The only refusals of a schema-valid step tolerated: rules the contract documents in prose
# because JSON Schema cannot state them (each is in the fuzz test's DOCUMENTED_RULES, which
# names where openapi.yaml says so), matched on the problem's `detail` or `errors[].message`.
# A link followed after a later step changed the booking (confirm after cancel) is `409`
# naming `current_status`, which schemathesis counts as a valid request's answer: no failure.
STATEFUL_RULES = frozenset(
    {
        # Cross-field rules: one field's validity depends on another's.
        "end must be after start",
        "give near_lat and near_lon together",
        "the window may span at most 92 days",
        "a block may last at most 366 days",
        # Windows against the clock (occupancy, blocks: generated, not moved near now).
        "start is in the past",
        "start is too far ahead",
        "must fall within years 1 to 9999 in UTC",
        # A patch must change something; null may not replace a field (SitePatch/BedPatch).
        "fields may be omitted but not null",
        "the patch changes nothing",
        "must not repeat a value",
        # Values only the service issues: generated ones name nothing it issued.
        "If-Match does not name the current version",
        "not a cursor this service issued",
        "this Idempotency-Key was used with a different request",
    }
)
assert STATEFUL_RULES <= DOCUMENTED_RULES


@dataclass
class Tally:
    requests: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    by_operation: Counter[str] = field(default_factory=Counter)
    checks: Counter[str] = field(default_factory=Counter)
    check_failures: Counter[str] = field(default_factory=Counter)
    documented: Counter[str] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)
    scenarios: int = 0
    flaky_suites: int = 0
    # The bookings each status was answered for (a lifecycle action's 2xx).
    seen: defaultdict[str, set[str]] = field(default_factory=lambda: defaultdict(set))


def _documented(body: Any) -> str | None:
    if not isinstance(body, dict):
        return None
    text = " ".join(
        [str(body.get("detail", ""))] + [str(e.get("message")) for e in body.get("errors", [])]
    )
    for rule in STATEFUL_RULES:
        if rule in text:
            return rule
    return None


def _window(rng: random.Random, now: datetime) -> tuple[str, str]:
    """Start within the next hour, end 2 to 6 hours later."""
    start = now + timedelta(minutes=rng.randint(1, 60))
    end = start + timedelta(hours=rng.randint(2, 6))
    return start.isoformat(), end.isoformat()


def _machine(
    walk: tuple[str, frozenset[str]],
    base_url: str,
    keys: dict[str, str],
    clock: ManualClock,
    tally: Tally,
) -> type[APIStateMachine]:
    root, operations = walk
    schema = schemathesis.openapi.from_path(str(SPEC_PATH))
    # The key is the role's own (test_roles.py covers the others); the lifecycle is walked by
    # valid requests (the fuzz test sends the invalid ones, operation by operation).
    schema.config.generation.update(with_security_parameters=False, modes=[GenerationMode.POSITIVE])
    # The links the contract declares, not those schemathesis infers from names (which send
    # every booking to every action whatever its state): the contract's links are under test.
    schema.config.phases.stateful.inference.algorithms = []
    selected = schema.include(operation_id=sorted(operations))
    session = requests.Session()
    rng = random.Random(17)

    def on_validate(context: Any, case: Any, response: Any, results: list[Any]) -> None:
        for result in results:
            tally.checks[result.name] += 1
            if result.failure is not None:
                tally.check_failures[result.name] += 1

    selected.hooks.register_hook_with_name(on_validate, "after_validate")

    base = selected.as_state_machine()
    roots = {normalize_name(f"RANDOM -> {root}")}
    assert roots <= base.root_rules, sorted(base.root_rules)

    class Lifecycle(base):  # type: ignore[misc,valid-type]
        root_rules = frozenset(roots)

        def before_call(self, case: schemathesis.Case) -> None:
            label = case.operation.definition.raw.get("operationId")
            if label == "searchAvailability":
                query = dict(case.query or {})
                query["start"], query["end"] = _window(rng, clock.now())
                # The exclusion zone and the distance cap would hide the seeded sites.
                for name in ("avoid_lat", "avoid_lon", "avoid_km", "max_km"):
                    query.pop(name, None)
                case.query = query
            elif label == "createBooking" and isinstance(case.body, dict):
                # The window searched when the availability link brought it; else near now.
                start, end = _moment(case.body.get("start")), _moment(case.body.get("end"))
                now = clock.now()
                if start is None or not now <= start <= now + timedelta(hours=1):
                    case.body["start"], case.body["end"] = _window(rng, now)
                elif end is None or not start < end <= start + timedelta(hours=6):
                    case.body["end"] = (start + timedelta(hours=rng.randint(2, 6))).isoformat()
            elif label == "extendBooking" and isinstance(case.body, dict):
                later = clock.now() + timedelta(hours=rng.randint(8, 24))
                case.body["end"] = later.isoformat()

        def teardown(self) -> None:
            tally.scenarios += 1
            super().teardown()

        def get_call_kwargs(self, case: schemathesis.Case) -> dict[str, Any]:
            label = case.operation.definition.raw.get("operationId")
            key = keys["officer"] if label in OFFICER else keys["provider"]
            return {
                "base_url": base_url,
                "session": session,
                "headers": {"Authorization": f"Bearer {key}"},
            }

        def validate_response(
            self,
            response: Any,
            case: schemathesis.Case,
            additional_checks: Any = None,
            **kwargs: Any,
        ) -> None:
            tally.requests += 1
            tally.statuses[response.status_code] += 1
            tally.by_operation[f"{case.operation.label} {response.status_code}"] += 1
            if response.status_code < 300 and case.operation.path.startswith("/v1/bookings"):
                body = response.json()
                if isinstance(body, dict) and "status" in body:
                    tally.seen[body["status"]].add(body["id"])
            try:
                super().validate_response(response, case, additional_checks, **kwargs)
            except FailureGroup as group:
                try:
                    body = json.loads(response.content)
                except ValueError:
                    body = None
                for failure in group.exceptions:
                    rule = (
                        _documented(body)
                        if type(failure).__name__ == "RejectedPositiveData"
                        else None
                    )
                    if rule is not None:
                        tally.documented[rule] += 1
                        continue
                    tally.failures.append(
                        f"{case.operation.label} {case.as_curl_command()}\n"
                        f"  -> {response.status_code} {response.content[:300]!r}\n"
                        f"  {failure.title}: {failure.message}"
                    )

    # A root rule shadowed by None is no rule: Hypothesis collects rules from the class.
    for name in base.root_rules - roots:
        setattr(Lifecycle, name, None)
    return Lifecycle


def _moment(value: Any) -> datetime | None:
    try:
        moment = datetime.fromisoformat(str(value))
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else None


def _walk(
    walk: tuple[str, frozenset[str]],
    base_url: str,
    keys: dict[str, str],
    clock: ManualClock,
    tally: Tally,
    *,
    scenarios: int,
    until_walked: bool = False,
) -> None:
    """Runs `scenarios` scenarios (in a worker thread: the app under test answers on the test's
    event loop); with `until_walked`, more until a booking has been confirmed and one has
    arrived, within MAX_SCENARIOS and BUDGET_SECONDS."""
    machine = _machine(walk, base_url, keys, clock, tally)
    started, done = time.monotonic(), tally.scenarios

    def enough() -> bool:
        ran = tally.scenarios - done
        if ran >= MAX_SCENARIOS or time.monotonic() - started > BUDGET_SECONDS:
            return True
        walked = tally.seen["confirmed"] and (tally.seen["arrived"] or tally.seen["departed"])
        return ran >= scenarios and (walked or not until_walked)

    # Suites of SUITE scenarios, each with its own seed. The steps depend on the service's
    # answers, so Hypothesis may find that a replayed scenario draws differently (Flaky);
    # schemathesis's own runner then starts a new suite with the next seed, as this one does.
    seed = 0
    while not enough():
        try:
            hypothesis.seed(seed)(machine).run(
                settings=hypothesis.settings(
                    max_examples=SUITE,
                    stateful_step_count=STEPS,
                    database=None,
                    deadline=None,
                    phases=[hypothesis.Phase.generate],
                    suppress_health_check=list(hypothesis.HealthCheck),
                )
            )
        except Flaky:
            tally.flaky_suites += 1
        except AssertionError as error:
            if not is_inconsistent_replay(error):
                raise
            tally.flaky_suites += 1
        seed += 1


async def test_stateful_phase_walks_bookings_through_their_lifecycle(
    make_api: AppFactory, db: Pool, clock: ManualClock
) -> None:
    # The service's own lead time (the suite's settings stretch it to 90 days).
    lead = {**NO_LIMITS, "max_lead_hours": Settings.model_fields["max_lead_hours"].default}
    world = await World.create(await make_api(settings_overrides=lead), db)
    # Sites that fit any needs: an instant one, ranked first (an interpreter on call) unless
    # the search asks for Welsh, which only the request-mode one speaks.
    sites = []
    for mode, languages, interpreter in (("instant", ["en"], True), ("request", ["cy"], False)):
        site = await world.site(
            genders_accepted=["female", "male", "non_binary"],
            languages=languages,
            interpreter_on_call=interpreter,
            booking_mode=mode,
        )
        for _ in range(BEDS):
            await world.bed(
                site["id"], room_type="family", wheelchair_accessible=True, max_dependants=20
            )
        sites.append(site["id"])
    keys = {"officer": world.officer, "provider": world.provider}
    base_url = str(world.api.client.make_url("")).rstrip("/")

    tally = Tally()
    await asyncio.to_thread(
        _walk, LIFECYCLE, base_url, keys, clock, tally, scenarios=EXAMPLES, until_walked=True
    )
    await asyncio.to_thread(
        _walk, CAPACITY, base_url, keys, clock, tally, scenarios=max(1, EXAMPLES // 3)
    )

    # Each booking's path: the states its transitions left it in, in order.
    async with db.acquire() as conn:
        rows = await conn.fetch(
            "SELECT array_agg(t.status ORDER BY t.id) AS path FROM booking b"
            " JOIN booking_transition t ON t.booking_id = b.id"
            " WHERE b.site_id = ANY($1::uuid[]) GROUP BY b.id",
            sites,
        )
    paths = [list(row["path"]) for row in rows]
    final = Counter(path[-1] for path in paths)
    reached = Counter(status for path in paths for status in set(path))
    print(  # noqa: T201 (the figures a longer run by hand reports)
        f"\n{tally.requests} requests, statuses {dict(sorted(tally.statuses.items()))}\n"
        f"{len(paths)} bookings; final states {dict(final)}; reached {dict(reached)}\n"
        f"checks {dict(sorted(tally.checks.items()))}\n"
        f"check failures {dict(tally.check_failures)}\n"
        f"documented rejections {dict(tally.documented)}\n"
        f"by operation {dict(sorted(tally.by_operation.items()))}\n"
        f"{tally.scenarios} scenarios, {tally.flaky_suites} suites ended early as flaky, "
        f"failures {len(tally.failures)}"
    )
    assert not [s for s in tally.statuses if s >= 500], tally.statuses
    assert not tally.failures, "\n\n".join(tally.failures[:20])
    assert tally.checks, "no check ran"
    # The point: bookings held by following the links went through their lifecycle.
    assert reached["confirmed"] >= 1, paths
    assert reached["arrived"] + reached["departed"] >= 1, paths
