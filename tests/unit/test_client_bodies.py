"""The typed client's request bodies are the contract's: for every client method, the model it
sends (its `body` parameter) has the fields of the operation's `requestBody` schema in
openapi.yaml, each required exactly when the schema requires it, nested objects and enums
included; the body itself is optional exactly when the contract's `requestBody` is; and a method
sends a body exactly when its operation takes one. Read from openapi.yaml and the client's
signatures, so a body changed on either side alone fails here."""

from __future__ import annotations

import inspect
import types
import typing
from enum import Enum, StrEnum
from typing import Any, get_args, get_origin

import pytest
import yaml
from pydantic import BaseModel

from service import client
from tests.support.api import SPEC_PATH
from tests.unit.test_operation_ids import snake

SPEC: dict[str, Any] = yaml.safe_load(SPEC_PATH.read_text())


def _resolve(schema: dict[str, Any]) -> dict[str, Any]:
    """The schema with its `$ref` (and a lone `allOf` of one) followed, as often as needed."""
    while True:
        if "$ref" in schema:
            ref = schema["$ref"]
            assert ref.startswith("#/"), ref
            target: Any = SPEC
            for part in ref[2:].split("/"):
                target = target[part]
            # Siblings of a $ref (a description, say) annotate it; the target is the schema.
            schema = target
        elif list(schema.get("allOf", [])) and len(schema["allOf"]) == 1:
            schema = schema["allOf"][0]
        else:
            return schema


def _operation(operation_id: str) -> dict[str, Any]:
    method, path = client.OPERATIONS[operation_id]
    operation: dict[str, Any] = SPEC["paths"][path][method.lower()]
    assert operation["operationId"] == operation_id
    return operation


def _request_schema(operation_id: str) -> tuple[dict[str, Any], bool] | None:
    """The operation's JSON request body schema (resolved) and whether the body is required."""
    body = _operation(operation_id).get("requestBody")
    if body is None:
        return None
    schema = _resolve(body["content"]["application/json"]["schema"])
    return schema, bool(body.get("required", False))


def _body_parameter(operation_id: str) -> inspect.Parameter | None:
    """The method's `body` parameter, its annotation evaluated (the client's module uses
    `from __future__ import annotations`)."""
    method = getattr(client.Client, snake(operation_id))
    parameter = inspect.signature(method).parameters.get("body")
    if parameter is None:
        return None
    return parameter.replace(annotation=typing.get_type_hints(method)["body"])


def _models(annotation: Any) -> tuple[list[type[BaseModel]], list[type[Enum]], bool]:
    """The models and enums an annotation names, and whether it admits None."""
    origin = get_origin(annotation)
    if origin in (types.UnionType, typing.Union):
        models: list[type[BaseModel]] = []
        enums: list[type[Enum]] = []
        nullable = False
        for arg in get_args(annotation):
            found, found_enums, found_null = _models(arg)
            models += found
            enums += found_enums
            nullable = nullable or found_null
        return models, enums, nullable
    if origin is typing.Annotated:
        return _models(get_args(annotation)[0])
    if annotation is type(None):
        return [], [], True
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation], [], False
    if isinstance(annotation, type) and issubclass(annotation, Enum):
        return [], [annotation], False
    return [], [], False


def _differences(model: type[BaseModel], schema: dict[str, Any], where: str) -> list[str]:
    """How the model's fields differ from the object schema's properties (names, required-ness,
    enum values), nested objects and arrays of them included."""
    schema = _resolve(schema)
    properties: dict[str, Any] = schema.get("properties", {})
    required = set(schema.get("required", []))
    fields = {(info.alias or name): info for name, info in model.model_fields.items()}
    found: list[str] = []
    for name in sorted(set(properties) - set(fields)):
        found.append(f"{where}.{name}: in the contract, not in {model.__name__}")
    for name in sorted(set(fields) - set(properties)):
        found.append(f"{where}.{name}: in {model.__name__}, not in the contract")
    for name in sorted(set(fields) & set(properties)):
        info, prop = fields[name], _resolve(properties[name])
        if info.is_required() != (name in required):
            says = "required" if name in required else "optional"
            found.append(f"{where}.{name}: {says} in the contract, not in {model.__name__}")
        if prop.get("type") == "array" or "array" in (prop.get("type") or []):
            prop = _resolve(prop.get("items", {}))
        annotation = info.annotation
        if get_origin(annotation) in (list, tuple, set, frozenset):
            annotation = get_args(annotation)[0]
        nested, enums, _ = _models(annotation)
        for sub in nested:
            found += _differences(sub, prop, f"{where}.{name}")
        if enums and "enum" in prop:
            allowed = {value for value in prop["enum"] if value is not None}
            for enum in enums:
                if {member.value for member in enum} != allowed:
                    found.append(f"{where}.{name}: {enum.__name__} is not the contract's enum")
    return found


BODIED = sorted(op for op in client.OPERATIONS if _request_schema(op) is not None)


def test_a_method_sends_a_body_exactly_when_its_operation_takes_one() -> None:
    sending = {op for op in client.OPERATIONS if _body_parameter(op) is not None}
    assert sending == set(BODIED)
    assert BODIED, "openapi.yaml has no request bodies?"


@pytest.mark.parametrize("operation_id", BODIED)
def test_the_client_sends_the_contract_s_request_body(operation_id: str) -> None:
    request = _request_schema(operation_id)
    parameter = _body_parameter(operation_id)
    assert request is not None and parameter is not None
    schema, body_required = request
    models, _, nullable = _models(parameter.annotation)
    assert len(models) == 1, f"{snake(operation_id)}'s body is one model, not {models}"
    (model,) = models
    optional = nullable or parameter.default is not inspect.Parameter.empty
    assert optional != body_required, (
        f"{snake(operation_id)}: the contract's body is "
        f"{'required' if body_required else 'optional'}"
    )
    assert _differences(model, schema, model.__name__) == []


class _Codes(StrEnum):
    SITE_FULL = "site_full"


def test_the_comparison_sees_a_missing_field_and_a_short_enum() -> None:
    """The check itself: a model without the contract's `reason_code` (the client's decline
    body before this test), or with fewer codes than the contract's, differs."""

    class Bare(BaseModel):
        reason: str | None = None

    class Short(BaseModel):
        reason_code: _Codes | None = None
        reason: str

    schema = _resolve({"$ref": "#/components/schemas/DeclineIn"})
    assert _differences(Bare, schema, "Bare") == ["Bare.reason_code: in the contract, not in Bare"]
    assert _differences(Short, schema, "Short") == [
        "Short.reason: optional in the contract, not in Short",
        "Short.reason_code: _Codes is not the contract's enum",
    ]
