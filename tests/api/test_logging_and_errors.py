"""Request ids, one summary line per request, no secrets in logs, and the bare 500."""

from __future__ import annotations

import io
import json
import uuid

import asyncpg
import pytest
import structlog
from aiohttp import web
from structlog.testing import capture_logs

from service import keys
from service.routes import EVERY_ROLE
from tests.conftest import AppFactory
from tests.support.clock import ManualClock
from tests.support.world import World, bed_body, booking_body, site_body


def _lines(buffer: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in buffer.getvalue().splitlines() if line.strip()]


def _open_to_every_role(app: web.Application, method: str, path: str) -> None:
    """A route added by a test says who may call it, as every route must."""
    app[keys.ROUTE_ROLES] = {**app[keys.ROUTE_ROLES], (method, path): EVERY_ROLE}


async def test_request_id_is_echoed_or_made(world: World) -> None:
    given = await world.api.get("/healthz", headers={"X-Request-ID": "custody-42.abc"})
    assert given.headers["X-Request-ID"] == "custody-42.abc"
    made = await world.api.get("/healthz")
    assert len(made.headers["X-Request-ID"]) == 36
    unsafe = await world.api.get("/healthz", headers={"X-Request-ID": "x" * 200})
    assert unsafe.headers["X-Request-ID"] != "x" * 200
    problem = await world.api.get("/v1/sites", headers={"X-Request-ID": "rid-401"})
    assert problem.status == 401 and problem.headers["X-Request-ID"] == "rid-401"
    longest = "a.b-c_" + "9" * 58
    assert (await world.api.get("/healthz", headers={"X-Request-ID": longest})).headers[
        "X-Request-ID"
    ] == longest


@pytest.mark.parametrize(
    "given",
    [
        "name:Jane.Doe:dob:1990-01-01",  # a colon
        "x" * 65,  # longer than 64
        "Jane Doe",
        "jane@example.org",
        "Jane/Doe",
    ],
)
async def test_a_request_id_that_could_carry_a_name_is_replaced_with_ours(
    world: World, given: str
) -> None:
    """The audit log keeps the request id for ever: only a short plain one of the caller's is
    kept; the answer names the one that replaced it (the audit row and the log lines carry it)."""
    reply = await world.api.post(
        "/v1/sites", site_body(), key=world.provider, headers={"X-Request-ID": given}
    )
    assert reply.status == 201
    made = reply.headers["X-Request-ID"]
    assert made != given and str(uuid.UUID(made)) == made
    audit = await world.api.get(
        "/v1/audit",
        key=world.admin,
        params={"object_type": "site", "object_id": reply.body["id"]},
    )
    assert [row["request_id"] for row in audit.body["items"]] == [made]


async def test_every_log_line_of_a_request_carries_its_id(
    world: World, log_output: io.StringIO
) -> None:
    with capture_logs(processors=[structlog.contextvars.merge_contextvars]) as logs:
        reply = await world.api.post(
            "/v1/sites", site_body(), key=world.provider, headers={"X-Request-ID": "rid-777"}
        )
    assert reply.status == 201
    mine = [entry for entry in logs if entry.get("request_id") == "rid-777"]
    assert mine and len(mine) == len(logs)
    (summary,) = [entry for entry in mine if entry["event"] == "request"]
    assert summary["route"] == "/v1/sites" and summary["status"] == 201
    assert summary["method"] == "POST" and summary["role"] == "provider"


async def test_logs_never_carry_keys_or_personal_fields(
    make_api: AppFactory, world: World, log_output: io.StringIO, clock: ManualClock
) -> None:
    def add_failing_route(app: web.Application) -> None:
        async def boom(request: web.Request) -> web.Response:
            raise RuntimeError("deliberate failure")

        app.router.add_get("/v1/boom", boom)
        _open_to_every_role(app, "GET", "/v1/boom")

    api = await make_api(customise=add_failing_route, check_contract=False)
    body = site_body(address="Flat 9, 12 Secret Lane", phone="+44 7700 900123")
    created = await api.post("/v1/sites", body, key=world.provider)
    assert created.status == 201
    failed = await api.get("/v1/boom", key=world.provider)
    assert failed.status == 500
    await api.post(f"/v1/sites/{created.body['id']}/beds", bed_body(), key=world.provider)
    booking = booking_body(
        created.body["id"],
        clock.now(),
        person_ref="PERSON-REF-991",
        officer_collar="COLLAR-5150",
        notes="fled from a car wash in Slough",
    )
    held = await api.post("/v1/bookings", booking, key=world.officer)
    assert held.status == 201
    confirmed = await api.post(f"/v1/bookings/{held.body['id']}/confirm", None, key=world.officer)
    assert confirmed.status == 200
    output = log_output.getvalue()
    for secret in (
        world.provider,
        world.officer,
        "Secret Lane",
        "7700 900123",
        "PERSON-REF-991",
        "COLLAR-5150",
        "car wash",
    ):
        assert secret not in output
    events = [line["event"] for line in _lines(log_output)]
    assert "unhandled error" in events and events.count("request") >= 2


async def test_unexpected_errors_are_a_bare_500(
    make_api: AppFactory, world: World, log_output: io.StringIO
) -> None:
    def add_failing_route(app: web.Application) -> None:
        async def boom(request: web.Request) -> web.Response:
            raise ZeroDivisionError("secret internals")

        app.router.add_get("/v1/boom", boom)
        _open_to_every_role(app, "GET", "/v1/boom")

    api = await make_api(customise=add_failing_route, check_contract=False)
    reply = await api.get("/v1/boom", key=world.admin, headers={"X-Request-ID": "rid-500"})
    assert reply.status == 500
    assert reply.content_type == "application/problem+json"
    assert reply.body["type"].endswith(":internal-error")
    assert "secret internals" not in reply.raw.decode()
    assert "ZeroDivisionError" not in reply.raw.decode()
    (error,) = [line for line in _lines(log_output) if line["event"] == "unhandled error"]
    assert error["request_id"] == "rid-500"
    assert "ZeroDivisionError" in json.dumps(error["exception"])


async def test_a_database_conflict_is_a_retryable_503(make_api: AppFactory, world: World) -> None:
    def add_deadlocking_route(app: web.Application) -> None:
        async def deadlock(request: web.Request) -> web.Response:
            raise asyncpg.DeadlockDetectedError("deadlock detected")

        app.router.add_post("/v1/deadlock", deadlock)
        _open_to_every_role(app, "POST", "/v1/deadlock")

    api = await make_api(customise=add_deadlocking_route, check_contract=False)
    reply = await api.post(
        "/v1/deadlock", {}, key=world.admin, headers={"Idempotency-Key": "retry-me"}
    )
    assert reply.status == 503 and reply.headers["Retry-After"] == "1"
    assert reply.problem_type == "busy"
    again = await api.post(
        "/v1/deadlock", {}, key=world.admin, headers={"Idempotency-Key": "retry-me"}
    )
    assert again.status == 503 and "Idempotent-Replayed" not in again.headers
