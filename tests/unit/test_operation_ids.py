"""operationIds: every route has exactly one operation in openapi.yaml and each operation a
unique operationId; the client has one method per /v1 operation, named as its operationId in
snake_case, calling that operation's method and path. Read from openapi.yaml, so operations
added there are held to the same rules without editing this test."""

from __future__ import annotations

import inspect
import re
from collections import Counter
from typing import Any

import pytest
import yaml
from aiohttp import web

from service import client
from service.routes import add_routes
from tests.support.api import SPEC_PATH

HTTP_METHODS = ("get", "put", "post", "patch", "delete")

# Client methods that are not one operation each.
HELPERS = frozenset({"close", "events"})


def _spec() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(SPEC_PATH.read_text())
    return loaded


def _operations() -> list[tuple[str, str, dict[str, Any]]]:
    """(METHOD, path, operation) for every operation in openapi.yaml."""
    return [
        (method.upper(), path, operation)
        for path, item in _spec()["paths"].items()
        for method, operation in item.items()
        if method in HTTP_METHODS
    ]


def _by_id() -> dict[str, tuple[str, str]]:
    return {op["operationId"]: (method, path) for method, path, op in _operations()}


def snake(operation_id: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", operation_id).lower()


def test_snake_case() -> None:
    assert snake("checkInBooking") == "check_in_booking"
    assert snake("listWebhookDeliveries") == "list_webhook_deliveries"
    assert snake("healthz") == "healthz"


def test_every_route_has_exactly_one_operation_with_an_operation_id() -> None:
    app = web.Application()
    add_routes(app)
    routed = Counter(
        (route.method, route.resource.canonical)
        for route in app.router.routes()
        if route.method != "HEAD" and route.resource is not None
    )
    described = Counter((method, path) for method, path, _ in _operations())
    assert routed == described
    assert set(routed.values()) == {1}
    missing = [(m, p) for m, p, op in _operations() if not op.get("operationId")]
    assert missing == []


def test_operation_ids_are_unique_camel_case_verbs() -> None:
    ids = [op["operationId"] for _, _, op in _operations()]
    assert [i for i, n in Counter(ids).items() if n > 1] == []
    for operation_id in ids:
        assert re.fullmatch(r"[a-z]+(?:[A-Z][a-z]+)*", operation_id), operation_id


def _client_operations() -> dict[str, str]:
    """Client method name -> the operationId it sends."""
    methods = {
        name: member
        for name, member in inspect.getmembers(client.Client, inspect.iscoroutinefunction)
        if not name.startswith("_")
    }
    named = {snake(operation_id): operation_id for operation_id in client.OPERATIONS}
    unmatched = set(methods) - set(named) - HELPERS
    assert unmatched == set(), f"client methods that are no operation: {unmatched}"
    assert set(named) - set(methods) == set(), "operations without a client method"
    for name, operation_id in named.items():
        # The method sends its own operation, not a neighbour's.
        assert f'"{operation_id}"' in inspect.getsource(methods[name]), name
    return {name: named[name] for name in named}


def test_the_client_has_one_method_per_v1_operation() -> None:
    spec = {i: route for i, route in _by_id().items() if route[1].startswith("/v1/")}
    calls = _client_operations()
    assert set(spec) - set(calls.values()) == set(), "operations the client cannot call"
    for operation_id in calls.values():
        assert operation_id in spec, f"{operation_id} is not in openapi.yaml"
        assert client.OPERATIONS[operation_id] == spec[operation_id], operation_id


@pytest.mark.parametrize("helper", sorted(HELPERS))
def test_helpers_are_no_operation(helper: str) -> None:
    assert helper not in {snake(i) for i in _by_id()}
