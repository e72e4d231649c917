"""What every handler needs: parse a body or query, run a use case in its unit of work, answer
in JSON."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Awaitable, Callable, Coroutine
from datetime import datetime
from functools import cache
from typing import Any, TypeVar, get_args, get_origin
from uuid import UUID

from aiohttp import web
from pydantic import BaseModel, ValidationError

from service import keys
from service.domain.access import Principal
from service.errors import NotFound, Problem, UnsupportedMediaType, ValidationProblem
from service.models import FieldsError, Out
from service.usecases.tx import ReadTx, Tx
from service.usecases.uow import Answer, Once, Origin, UseCase

B = TypeVar("B", bound=BaseModel)
R = TypeVar("R")

PROBLEM_JSON = "application/problem+json"

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


def origin(request: web.Request) -> Origin:
    return Origin(principal(request), request.get(keys.REQUEST_ID))


async def read(request: web.Request, use_case: UseCase[ReadTx, R]) -> R:
    """Run a use case that records nothing, in a reading unit of work (service/usecases/uow)."""
    return await request.app[keys.UNITS].read(origin(request), use_case)


_IDEMPOTENCY_KEY = re.compile(r"^[\x21-\x7e]{1,255}$")


def _idempotency_key(request: web.Request) -> str | None:
    key = request.headers.get("Idempotency-Key")
    if request.method != "POST" or key is None:
        return None
    if not _IDEMPOTENCY_KEY.match(key):
        raise ValidationProblem(
            "Idempotency-Key must be 1 to 255 printable ASCII characters",
            errors=[{"field": "Idempotency-Key", "message": "1 to 255 printable ASCII characters"}],
        )
    return key


async def _fingerprint(request: web.Request) -> bytes:
    digest = hashlib.sha256()
    digest.update(request.method.encode())
    digest.update(b"\0")
    digest.update(request.path_qs.encode())
    digest.update(b"\0")
    digest.update(await request.read())
    return digest.digest()


def refused(problem: Problem) -> Answer:
    """A refusal as the error middleware answers it (service/middlewares.py)."""
    return Answer(
        status=problem.status,
        body=json.dumps(problem.body()).encode(),
        content_type=PROBLEM_JSON,
    )


async def write(
    request: web.Request,
    use_case: UseCase[Tx, R] | Coroutine[Any, Any, UseCase[Tx, R]],
    present: Callable[[R], Answer],
    *,
    replay: Callable[[Tx, UUID], Awaitable[bytes]] | None = None,
    after: Callable[[R], None] | None = None,
) -> web.Response:
    """Run a use case that changes state (or reads personal data), in a writing unit of work,
    and answer what `present` makes of its result (inside the unit: an answer that cannot be
    made undoes the change). `after` runs once the change committed.

    `use_case` may be awaitable: the parsing of the request that yields it. With an
    Idempotency-Key, a refusal there is the request's answer, stored and replayed like any.
    """
    try:
        key = _idempotency_key(request)
    except Problem:
        if isinstance(use_case, Coroutine):
            use_case.close()  # never started: nothing to undo
        raise
    units = request.app[keys.UNITS]
    ran: list[R] = []

    def presented(result: R) -> Answer:
        ran.append(result)
        return present(result)

    if key is None:
        run = await use_case if isinstance(use_case, Coroutine) else use_case
        answer = await units.write(origin(request), run, presented)
    else:
        once = Once(key, await _fingerprint(request), refused, replay)
        try:
            run_or_refused: UseCase[Tx, R] | Problem = (
                await use_case if isinstance(use_case, Coroutine) else use_case
            )
        except Problem as problem:
            run_or_refused = problem
        answer = await units.write_once(origin(request), once, run_or_refused, presented)
    if ran and after is not None:
        after(ran[0])
    return respond(answer)


def answer(
    shown: Out,
    *,
    status: int = 200,
    headers: dict[str, str] | None = None,
    stored: Out | None = None,
    booking_id: UUID | None = None,
) -> Answer:
    """A JSON answer; `stored` is what an Idempotency-Key replay shows instead, `booking_id`
    the booking a replay shows as it is then (no personal field is stored)."""
    return Answer(
        status=status,
        body=shown.model_dump_json().encode(),
        headers=headers or {},
        stored=None if stored is None else stored.model_dump_json().encode(),
        booking_id=booking_id,
    )


def no_content(_: object) -> Answer:
    return Answer(status=204, body=b"")


def respond(answer: Answer) -> web.Response:
    headers = dict(answer.headers)
    if answer.replayed:
        headers["Idempotent-Replayed"] = "true"
    if answer.status == 204:
        return web.Response(status=204, headers=headers)
    return web.Response(
        body=answer.body, status=answer.status, content_type=answer.content_type, headers=headers
    )


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
