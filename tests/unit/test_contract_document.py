"""openapi.yaml as third-party tools read it (issue 17): YAML that loads as it reads (a flow
mapping `{description: a, b}` loads as a junk key `b` with a null value, which Redocly counts
as an error and other validators pass over), a relative server, and headers no client can send
empty."""

from __future__ import annotations

import ast
import re
from typing import Any

import yaml

from tests.support.api import SPEC_PATH

# Keys whose value may be null on purpose: a schema's default, const or example, an example's
# value, an extension.
NULL_ALLOWED = frozenset({"default", "const", "example", "value"})


def _spec() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(SPEC_PATH.read_text())
    return loaded


def _nulls(node: Any, path: str = "") -> list[str]:
    found: list[str] = []
    if isinstance(node, dict):
        for key, value in node.items():
            where = f"{path}/{key}"
            if value is None and str(key) not in NULL_ALLOWED and not str(key).startswith("x-"):
                found.append(where)
            if str(key) not in ("example", "examples"):  # data, where null is a value
                found += _nulls(value, where)
    elif isinstance(node, list):
        for index, item in enumerate(node):
            found += _nulls(item, f"{path}/{index}")
    return found


def test_no_mapping_key_of_the_contract_loads_as_null() -> None:
    assert _nulls(_spec()) == []


def test_no_flow_mapping_description_has_an_unquoted_comma() -> None:
    """The text behind the check above: `{..., description: x, y}` on one line."""
    flow = re.compile(r"\{[^{}]*\bdescription: (?![\"'])[^}\"']*,[^}]*\}")
    lines = SPEC_PATH.read_text().splitlines()
    assert [f"{n}: {line.strip()}" for n, line in enumerate(lines, 1) if flow.search(line)] == []


def test_the_contract_names_no_host_of_its_own() -> None:
    """Swagger UI's "Try it out" and generated clients use `servers`: a relative one means
    "where this document was served from", whatever the deployment."""
    servers = _spec()["servers"]
    assert servers and all(not re.match(r"^[a-z]+://", s["url"]) for s in servers), servers


def test_if_match_cannot_be_empty() -> None:
    """An empty If-Match is answered 412 (it names no entity tag); the contract says so by not
    allowing an empty one."""
    spec = _spec()
    headers = [
        parameter
        for item in spec["paths"].values()
        for operation in item.values()
        if isinstance(operation, dict)
        for parameter in operation.get("parameters", [])
        if isinstance(parameter, dict) and parameter.get("name") == "If-Match"
    ] + [
        parameter
        for parameter in spec["components"].get("parameters", {}).values()
        if parameter.get("name") == "If-Match"
    ]
    assert headers
    assert all(h["schema"].get("minLength", 0) >= 1 for h in headers), headers


def _extension_members() -> dict[str, str]:
    """Every member a Problem is raised with (`extra={"name": ...}`) in service/, by name, with
    where it is raised."""
    found: dict[str, str] = {}
    for source in sorted((SPEC_PATH.parent / "service").rglob("*.py")):
        tree = ast.parse(source.read_text(), str(source))
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            for keyword in node.keywords:
                if keyword.arg == "extra" and isinstance(keyword.value, ast.Dict):
                    for key in keyword.value.keys:
                        if isinstance(key, ast.Constant) and isinstance(key.value, str):
                            found[key.value] = f"{source.name}:{node.lineno}"
    return found


def test_problem_declares_every_member_the_service_sends() -> None:
    """A member Problem does not declare lands in a generated client's untyped extras (the
    409's `current_status` did). tests/support/api.py checks every problem answer the API
    tests see; this reads the members each problem is raised with."""
    declared = set(_spec()["components"]["schemas"]["Problem"]["properties"])
    members = _extension_members()
    assert {"current_status", "current_version", "conflict"} <= set(members)
    assert {name: at for name, at in members.items() if name not in declared} == {}
    assert {"type", "title", "status", "detail", "errors"} <= declared


def _media(spec: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """(where, media type, media object) of every request body and response with JSON."""
    found = []
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            where = f"{method.upper()} {path}"
            body = operation.get("requestBody", {}).get("content", {})
            found += [(f"{where} request", media, obj) for media, obj in body.items()]
            for status, response in operation["responses"].items():
                content = response.get("content", {}) if isinstance(response, dict) else {}
                found += [(f"{where} {status}", media, obj) for media, obj in content.items()]
    return found


def test_every_request_body_has_an_example_the_schema_accepts() -> None:
    """Postman and Swagger UI fill a request from `example` (issue 17: without one, Postman's
    sample bodies were regex noise); each example, and each response example, must be valid."""
    from openapi_schema_validator import OAS31Validator

    spec = _spec()
    missing = [
        where
        for where, media, obj in _media(spec)
        if where.endswith("request") and media.endswith("json") and "example" not in obj
    ]
    assert missing == []
    checked = 0
    for _, _, obj in _media(spec):
        if "example" in obj and "$ref" in obj.get("schema", {}):
            # The whole document as the root, so the schema's "#/components/..." resolves.
            OAS31Validator({**spec, "$ref": obj["schema"]["$ref"]}).validate(obj["example"])
            checked += 1
    assert checked >= 30, checked
