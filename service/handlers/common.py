"""What every handler needs: parse a body or query, find its connection, answer in JSON."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from functools import cache
from typing import Any, TypeVar, get_args, get_origin
from uuid import UUID

from aiohttp import web
from pydantic import BaseModel, ValidationError

from service import keys
from service.domain.access import Principal
from service.errors import NotFound, UnsupportedMediaType, ValidationProblem
from service.models import FieldsError, Out
from service.usecases import tx
from service.usecases.tx import Tx

B = TypeVar("B", bound=BaseModel)

JSON_TYPES = frozenset({"application/json", "application/merge-patch+json"})


def field_errors(exc: ValidationError, root: str = "body") -> list[dict[str, str]]:
    """Pydantic's errors as [{field, message}], without echoing the rejected values."""
    errors = []
    for error in exc.errors(include_input=False, include_url=False):
        field = ".".join(str(part) for part in error["loc"]) or root
        message = error["msg"].removeprefix("Value error, ")
        cause = (error.get("ctx") or {}).get("error")
        if isinstance(cause, FieldsError) and not error["loc"]:
            # A rule across fields names each field to change, not the whole query or body.
            errors += [{"field": name, "message": message} for name in cause.fields]
            continue
        if error["type"] == "extra_forbidden":
            message = "unknown field"
        elif error["type"] == "json_invalid":
            field, message = root, "the body is not valid JSON"
        errors.append({"field": field, "message": message})
    return errors


class _Object(dict[str, Any]):
    """A JSON object as parsed, remembering the keys it was given more than once."""

    repeated: list[str]


def _object(pairs: list[tuple[str, Any]]) -> _Object:
    parsed = _Object(pairs)
    seen: set[str] = set()
    parsed.repeated = []
    for key, _ in pairs:
        if key in seen:
            parsed.repeated.append(key)
        seen.add(key)
    return parsed


def repeated_keys(raw: bytes) -> list[str]:
    """Where the JSON document repeats a key in one object, as dotted paths. JSON that does not
    parse is left to pydantic to name; nesting too deep to parse is refused here."""
    try:
        document = json.loads(raw, object_pairs_hook=_object)
    except ValueError:
        return []
    except RecursionError:
        raise ValidationProblem(
            "the body is nested too deeply",
            errors=[{"field": "body", "message": "the body is nested too deeply"}],
        ) from None
    found: list[str] = []
    stack: list[tuple[str, Any]] = [("", document)]
    while stack:
        path, value = stack.pop()
        children: list[tuple[str, Any]] = []
        if isinstance(value, _Object):
            found += [f"{path}{key}" for key in value.repeated]
            children = [(f"{path}{key}.", item) for key, item in value.items()]
        elif isinstance(value, list):
            children = [(f"{path}{index}.", item) for index, item in enumerate(value)]
        stack += children
    return sorted(set(found))


def invalid(errors: list[dict[str, str]]) -> ValidationProblem:
    """A 400 naming each field, its detail the errors in one line."""
    return ValidationProblem(
        "; ".join(f"{e['field']}: {e['message']}" for e in errors), errors=errors
    )


def given_twice(names: list[str]) -> ValidationProblem:
    return invalid([{"field": name, "message": "given more than once"} for name in names])


async def read_body(request: web.Request, model: type[B]) -> B:
    """The one body parser: JSON only, no key given twice, exact fields, every error named."""
    if request.content_type not in JSON_TYPES:
        raise UnsupportedMediaType("send the body as application/json")
    raw = await request.read()
    # Parsers keep the last of repeated keys, others the first: {"role": "officer", "role":
    # "admin"} must not mean whatever this parser happens to pick.
    repeated = repeated_keys(raw)
    if repeated:
        raise given_twice(repeated)
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        raise invalid(field_errors(exc)) from None


def _is_list(annotation: Any) -> bool:
    """Whether a field's type is a list (under Optional and Annotated)."""
    if get_origin(annotation) is list:
        return True
    return any(_is_list(arg) for arg in get_args(annotation))


@cache
def _list_parameters(model: type[BaseModel]) -> frozenset[str]:
    return frozenset(name for name, f in model.model_fields.items() if _is_list(f.annotation))


def read_query(request: web.Request, model: type[B]) -> B:
    """The query as `model`. A list parameter may come as one comma list, repeated, or both
    (`types=a,b`, `types=a&types=b`: generators send the second whatever `explode: false`
    says); its parts are joined in order, so a value named twice is still refused. A repeat of
    any other parameter is refused, not resolved: first-wins would silently drop a stricter
    exclusion radius a proxy or force system appended."""
    lists = _list_parameters(model)
    repeated = sorted(
        {name for name in request.query if len(request.query.getall(name)) > 1} - lists
    )
    if repeated:
        raise given_twice(repeated)
    query = {name: ",".join(request.query.getall(name)) for name in request.query}
    try:
        return model.model_validate(query)
    except ValidationError as exc:
        raise invalid(field_errors(exc, root="query")) from None


def path_id(request: web.Request, name: str, what: str) -> UUID:
    """A path id; one that is not a UUID names nothing, so it is a 404."""
    try:
        return UUID(request.match_info[name])
    except ValueError:
        raise NotFound(f"{what} not found") from None


def principal(request: web.Request) -> Principal:
    return request[keys.PRINCIPAL]


def now(request: web.Request) -> datetime:
    return request.app[keys.CLOCK].now()


@asynccontextmanager
async def writing(request: web.Request) -> AsyncIterator[Tx]:
    """The request's unit of work, for use cases that change state or read personal data.

    Inside an Idempotency-Key request it is a savepoint on the connection that will also store
    the answer (so the answer exists if and only if the change committed); otherwise a fresh
    pooled transaction. Either way the clock is read once, here.
    """
    who, at, request_id = principal(request), now(request), request.get(keys.REQUEST_ID)
    shared = request.get(keys.CONNECTION)
    if shared is not None:
        async with tx.writing(shared, at=at, who=who, request_id=request_id) as unit:
            yield unit
        return
    async with (
        request.app[keys.POOL].acquire() as conn,
        tx.writing(conn, at=at, who=who, request_id=request_id) as unit,
    ):
        yield unit


@asynccontextmanager
async def reading(request: web.Request) -> AsyncIterator[Tx]:
    """For use cases that read nothing personal: a connection without a transaction."""
    who, at, request_id = principal(request), now(request), request.get(keys.REQUEST_ID)
    shared = request.get(keys.CONNECTION)
    if shared is not None:
        yield tx.reading(shared, at=at, who=who, request_id=request_id)
        return
    async with request.app[keys.POOL].acquire() as conn:
        yield tx.reading(conn, at=at, who=who, request_id=request_id)


def json_response(
    data: Out | dict[str, Any] | list[Any],
    *,
    status: int = 200,
    headers: dict[str, str] | None = None,
) -> web.Response:
    # pydantic's own (Rust) encoder for models: measurably cheaper than dump + json.dumps.
    body = (
        data.model_dump_json().encode()
        if isinstance(data, BaseModel)
        else json.dumps(data, separators=(",", ":")).encode()
    )
    return web.Response(
        body=body,
        status=status,
        content_type="application/json",
        headers=headers,
    )


def etag(version: int) -> str:
    return f'"{version}"'


_ENTITY_TAG = re.compile(r'(W/)?"([^"]*)"')


def if_match_allows(request: web.Request, current: int) -> bool:
    """Whether If-Match lets a change to version `current` go ahead (RFC 9110 13.1.1): absent,
    `*`, or a list naming the current version's entity tag. If-Match compares strongly, so a
    weak tag never matches, and neither does anything unparseable."""
    header = request.headers.get("If-Match")
    if header is not None and not header.strip():
        # An empty If-Match names no version: bad input (the contract's minLength 1), not a
        # stale version.
        message = "If-Match must name an entity tag (or *)"
        raise invalid([{"field": "If-Match", "message": message}])
    if header is None or header.strip() == "*":
        return True
    wanted = etag(current)
    return any(not weak and f'"{tag}"' == wanted for weak, tag in _ENTITY_TAG.findall(header))
