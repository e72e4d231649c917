"""schemathesis over the whole contract, as each role: every operation, valid and invalid
requests generated from openapi.yaml, every check schemathesis has.

Bounded for `make test` (FUZZ_EXAMPLES examples per operation, mode and role, derandomized so
a run repeats); run it longer by hand, e.g.
`FUZZ_EXAMPLES=300 pytest -s tests/api/test_fuzz_contract.py` (prints the figures).

The only failures tolerated are "valid request rejected" answers that openapi.yaml documents as
a rule JSON Schema cannot state (DOCUMENTED_RULES below, each named in the contract), so a
schema-valid request may still be refused.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import Failure, FailureGroup
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
)

from service.db import Pool
from tests.conftest import AppFactory
from tests.support.api import SPEC_PATH
from tests.support.clock import ManualClock
from tests.support.world import World

pytestmark = pytest.mark.slow  # fuzz: schemathesis generates thousands of requests

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "4"))

# Refusals of schema-valid requests that the contract documents in prose (the operation's or the
# field's description says so), matched on the problem's `detail`.
DOCUMENTED_RULES = {
    # Cross-field rules: one field's validity depends on another's.
    "end must be after start",
    "give near_lat and near_lon together",
    "max_km needs near_lat and near_lon",
    "give avoid_lat, avoid_lon and avoid_km together",
    "an officer key needs `force`",
    "a provider key needs `provider_id`",
    "only officer keys have a `force`",
    "only provider keys have a `provider_id`",
    "the window may span at most 92 days",
    # A publishable report covers one whole calendar month or quarter (getReportSummary).
    "with publishable=true, start must be",
    "with publishable=true, end must be",
    "a block may last at most 366 days",
    "the window is longer than any stay",
    # Rules against the clock: a window in the past or too far ahead.
    "start is in the past",
    "start is too far ahead",
    # Timestamps outside years 1-9999 once converted to UTC (Timestamp's description).
    "must fall within years 1 to 9999 in UTC",
    # The patch must change something; null may not replace a field (SitePatch/BedPatch).
    "fields may be omitted but not null",
    "the patch changes nothing",
    # Values must not repeat (uniqueItems compares 1 and 1.0 alike; so does the service).
    "must not repeat a value",
    # Opaque cursors: any the service did not issue (the Cursor parameter's description).
    "not a cursor this service issued",
    # An Idempotency-Key reused with another request (the API description, Idempotency).
    "this Idempotency-Key was used with a different request",
    # A stale If-Match (IfMatch parameter; the fixed ids name real sites and beds).
    "If-Match does not name the current version",
    # A reference to an object that does not exist (force, provider) is named as a field.
    "no such force",
    "no such provider",
    # A webhook URL's form and where its host resolves to (WebhookIn.url's description).
    "is not a valid URL",
    "must be an http or https URL",
    "must be an https URL",
    "must name a host",
    "must not carry a user name or password",
    "must not have a #fragment",
    "must not name port 0",
    "must write an IPv4 address as four decimal numbers",
    "names a host that does not resolve",
    "which webhooks may not reach",
}


@dataclass
class Tally:
    requests: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    documented: Counter[str] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)


def _documented(failure: Failure, body: Any) -> str | None:
    if type(failure).__name__ != "RejectedPositiveData" or not isinstance(body, dict):
        return None
    text = " ".join(
        [str(body.get("detail", ""))] + [str(e.get("message")) for e in body.get("errors", [])]
    )
    for rule in DOCUMENTED_RULES:
        if rule in text:
            return rule
    return None


def _fuzz(base_url: str, key: str, ids: dict[str, str], examples: int) -> Tally:
    """Runs in a worker thread: the app under test answers on the test's event loop."""
    schema = schemathesis.openapi.from_path(str(SPEC_PATH))
    # The key is the role under test: negating it would spend examples on 401s (tests/api/
    # test_roles.py covers those) instead of on the parameters and bodies.
    schema.config.generation.update(with_security_parameters=False)
    tally = Tally()
    session = requests.Session()
    headers = {"Authorization": f"Bearer {key}"}
    for result in schema.get_all_operations():
        operation = result.ok()
        names = re.findall(r"{(\w+)}", operation.path)
        fixed = {name: ids[name] for name in names if name in ids}
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            run = _operation_test(
                operation, mode, fixed, examples, tally, base_url, headers, session
            )
            try:
                run()
            except Unsatisfiable:
                # Nothing to mutate (no parameters, no body): no negative request exists.
                assert mode is GenerationMode.NEGATIVE, operation.label
        _hostile_test(operation, fixed, examples, tally, base_url, headers, session)()
    return tally


def _cursor(value: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")


# Values that reached a 500 before issue 6 (and their neighbours), for any text a client sends.
HOSTILE = [
    "a\u0000b",
    "\u0000",
    "\u001b[2J\u001b[31m",
    "bell\u0007",
    "back\u0008space",
    "Haven \u202eesuoH",
    "\u2067isolate\u2069",
    "\u0085next line",
    "   ",
    "9999-12-31T23:59:59-01:00",
    "0001-01-01T00:00:00+01:00",
    "0000-01-01T00:00:00Z",
    _cursor(["2030-01-01T00:00:00+00:00", "not-a-uuid"]),
    _cursor([["2030-01-01T00:00:00+00:00"], {"id": 1}]),
    base64.urlsafe_b64encode(b"[" * 300 + b"]" * 300).decode().rstrip("="),
    _cursor(["\u0000"]),
    _cursor(["0001-01-01T00:00:00+01:00", "6f1b5c36-5a4e-4b8e-9a59-6a1e0b1f7c2d"]),
    "x" * 600,
]
# (Unpaired surrogates, which schemathesis cannot send, are in tests/api/test_bad_input.py.)


def _poison(value: Any, draw: Callable[[list[str]], str], pool: list[str]) -> Any:
    if isinstance(value, str):
        return draw(pool)
    if isinstance(value, dict):
        return {k: _poison(v, draw, pool) for k, v in value.items()}
    if isinstance(value, list):
        return [_poison(v, draw, pool) for v in value]
    return value


def _hostile_test(
    operation: schemathesis.APIOperation,
    fixed: dict[str, str],
    examples: int,
    tally: Tally,
    base_url: str,
    headers: dict[str, str],
    session: requests.Session,
) -> Callable[[], None]:
    """Valid requests with every string in the query and body replaced by a hostile value:
    each is refused with a 4xx problem the contract describes, never a 5xx."""
    strategy = operation.as_strategy(generation_mode=GenerationMode.POSITIVE, path_parameters=fixed)

    @settings(
        max_examples=examples,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=strategy, data=st.data())
    def run(case: schemathesis.Case, data: st.DataObject) -> None:
        def draw(pool: list[str]) -> str:
            return data.draw(st.sampled_from(pool))

        if case.query:
            case.query = _poison(dict(case.query), draw, HOSTILE)
        if isinstance(case.body, dict | list):
            case.body = _poison(case.body, draw, HOSTILE)
        tally.requests += 1
        response = case.call(base_url=base_url, session=session, headers=headers)
        tally.statuses[response.status_code] += 1
        try:
            case.validate_response(
                response,
                checks=[not_a_server_error, content_type_conformance, response_schema_conformance],
                headers=headers,
                transport_kwargs={"base_url": base_url},
            )
        except FailureGroup as group:
            tally.failures += [
                f"{operation.label} [hostile] {case.as_curl_command(headers)}\n"
                f"  -> {response.status_code} {response.content[:300]!r}\n"
                f"  {failure.title}: {failure.message}"
                for failure in group.exceptions
            ]

    return run


def _operation_test(
    operation: schemathesis.APIOperation,
    mode: GenerationMode,
    fixed: dict[str, str],
    examples: int,
    tally: Tally,
    base_url: str,
    headers: dict[str, str],
    session: requests.Session,
) -> Callable[[], None]:
    @settings(
        max_examples=examples,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode, path_parameters=fixed))
    def run(case: schemathesis.Case) -> None:
        tally.requests += 1
        response = case.call(base_url=base_url, session=session, headers=headers)
        tally.statuses[response.status_code] += 1
        try:
            case.validate_response(
                response, headers=headers, transport_kwargs={"base_url": base_url}
            )
        except FailureGroup as group:
            try:
                body = json.loads(response.content)
            except ValueError:
                body = None
            for failure in group.exceptions:
                rule = _documented(failure, body)
                if rule is not None:
                    tally.documented[rule] += 1
                    continue
                tally.failures.append(
                    f"{operation.label} [{mode.value}] {case.as_curl_command(headers)}\n"
                    f"  -> {response.status_code} {response.content[:300]!r}\n"
                    f"  {failure.title}: {failure.message}"
                )

    return run


# The limits have tests of their own; here they would turn most generated requests into 429s.
NO_LIMITS = {
    "rate_limit_searches_per_minute": 0,
    "rate_limit_writes_per_minute": 0,
    "hold_cap_per_key": 10_000,
    "hold_cap_per_force": 100_000,
    "booking_cap_per_key": 10_000,
    "booking_cap_per_force": 100_000,
}


@pytest.mark.parametrize("role", ["admin", "officer", "provider"])
async def test_schemathesis_finds_nothing(
    make_api: AppFactory, db: Pool, clock: ManualClock, role: str
) -> None:
    world = await World.create(await make_api(settings_overrides=NO_LIMITS), db)
    site = await world.site()
    bed = await world.bed(site["id"])
    booking = await world.book(site["id"], clock.now() + timedelta(hours=1))
    block = await world.api.post(
        f"/v1/sites/{site['id']}/blocks",
        {
            "bed_id": bed["id"],
            "start": (clock.now() + timedelta(days=10)).isoformat(),
            "end": (clock.now() + timedelta(days=11)).isoformat(),
            "reason": "repairs",
        },
        key=world.provider,
    )
    assert block.status == 201, block.body
    ids = {
        "site_id": site["id"],
        "bed_id": bed["id"],
        "block_id": block.body["id"],
        "booking_id": booking["id"],
        "provider_id": world.provider_id,
    }
    key = {"admin": world.admin, "officer": world.officer, "provider": world.provider}[role]
    base_url = str(world.api.client.make_url("")).rstrip("/")
    tally = await asyncio.to_thread(_fuzz, base_url, key, ids, EXAMPLES)
    print(  # noqa: T201 (the figures a longer run by hand reports)
        f"\n{role}: {tally.requests} requests, statuses {dict(sorted(tally.statuses.items()))}, "
        f"documented rejections {dict(tally.documented)}, failures {len(tally.failures)}"
    )
    assert not [s for s in tally.statuses if s >= 500]
    if tally.failures:
        report = SPEC_PATH.parent / ".schemathesis" / f"failures-{role}.txt"
        report.parent.mkdir(exist_ok=True)
        report.write_text("\n\n".join(tally.failures))
    assert not tally.failures, "\n\n".join(tally.failures[:20])
