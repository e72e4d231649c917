"""Request id and log context, problem+json errors, authentication and the role check."""

from __future__ import annotations

import asyncio
import json
import re
import time
import uuid
from collections.abc import Awaitable, Callable

import asyncpg
import structlog
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestPayloadError

from service import keys
from service.auth import hash_key
from service.domain.access import Principal, require_role
from service.errors import (
    Forbidden,
    Problem,
    Unauthorized,
    ValidationProblem,
)
from service.queries import api_keys as api_key_queries
from service.vocab import Role

log = structlog.get_logger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

PROBLEM_JSON = "application/problem+json"
# What `Server` says on every answer: aiohttp would announce its and Python's versions.
SERVER_NAME = "places-of-safety"
REQUEST_ID_HEADER = "X-Request-ID"
# A caller's own request id is kept (the audit log keeps it for ever, the logs for their
# retention) only in a form too short and plain to carry much: anything else, a name or a date
# of birth written with spaces, colons or @, is replaced by one of ours.
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")

# The roles of a route service.routes does not list: none (a route must say who may call it).
_UNDECLARED: frozenset[Role] = frozenset()

# nginx's name for "the client closed the connection before the answer": never sent.
CLIENT_CLOSED_REQUEST = 499

_STATUS_SLUGS = {
    404: ("not-found", "Not found"),
    405: ("method-not-allowed", "Method not allowed"),
    413: ("payload-too-large", "Request body too large"),
}


# Every HTML page (the API docs now, the console later): scripts, styles, images and fetches
# from this origin only, nothing inline, never framed. Swagger UI styles through the DOM
# (allowed) and its stylesheet draws icons as data: images.
PAGE_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "font-src 'self'; connect-src 'self'; form-action 'self'; base-uri 'none'; "
    "object-src 'none'; frame-ancestors 'none'"
)
# Anything else (JSON, YAML, metrics, assets) is never a document to run or frame.
DATA_POLICY = "default-src 'none'; frame-ancestors 'none'"


def security_headers(path: str, response: web.StreamResponse) -> None:
    """The headers every answer carries, chosen by its content type (so a new page is covered
    without naming it) and by its path (every /v1/ answer may carry personal data or an
    address, so none is stored by a browser or a shared cache)."""
    headers = response.headers
    is_page = response.content_type == "text/html"
    headers.setdefault("Content-Security-Policy", PAGE_POLICY if is_page else DATA_POLICY)
    headers["X-Content-Type-Options"] = "nosniff"
    headers["X-Frame-Options"] = "DENY"
    headers["Referrer-Policy"] = "no-referrer"
    if path.startswith("/v1/"):
        headers["Cache-Control"] = "no-store"


def problem_response(problem: Problem) -> web.Response:
    response = web.Response(
        body=json.dumps(problem.body()).encode(),
        status=problem.status,
        content_type=PROBLEM_JSON,
        headers=problem.headers,
    )
    if problem.headers.get("Connection", "").lower() == "close":
        # Close for real: aiohttp would otherwise linger reading the rest of a body that is
        # stalled or undecodable (and log that read's failure as an unhandled exception).
        response.force_close()
    return response


def _route_name(request: web.Request) -> str:
    """The route template (ids stay out of metrics labels and log lines)."""
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "unmatched"


def _route_roles(request: web.Request) -> frozenset[Role] | None:
    """The roles that may call the matched route; None when it is public."""
    table = request.app[keys.ROUTE_ROLES]
    return table.get((request.method, _route_name(request)), _UNDECLARED)


class ClientGone(Exception):
    """The client closed the connection before its request body arrived."""


# Methods a metric label may name; any other (answered 501 by `errors`) counts
# as "other", so no client can grow the metrics without bound.
_KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def _method_label(request: web.Request) -> str:
    return request.method if request.method in _KNOWN_METHODS else "other"


def _client_gone(request: web.Request, route: str) -> None:
    request.app[keys.METRICS].disconnects.labels(_method_label(request), route).inc()
    log.info("client disconnected", method=_method_label(request), route=route)


@web.middleware
async def request_context(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Binds a request id into every log line of this request and logs one summary line."""
    given = request.headers.get(REQUEST_ID_HEADER, "")
    request_id = given if _REQUEST_ID.match(given) else str(uuid.uuid4())
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(request_id=request_id)
    request[keys.REQUEST_ID] = request_id
    started = time.perf_counter()
    route = _route_name(request)
    try:
        response = await handler(request)
    except ClientGone:
        # Nobody is left to answer: count it apart from the answers, and send nothing (aiohttp
        # drops a response written to a closed connection).
        _client_gone(request, route)
        return web.Response(status=CLIENT_CLOSED_REQUEST)
    except asyncio.CancelledError:
        # A server run with handler_cancellation cancels the handler when its client goes.
        transport = request.transport
        if transport is None or transport.is_closing():
            _client_gone(request, route)
        raise
    response.headers[REQUEST_ID_HEADER] = request_id
    elapsed = time.perf_counter() - started
    request.app[keys.METRICS].observe_request(
        _method_label(request), route, response.status, elapsed
    )
    log.info(
        "request",
        method=_method_label(request),
        route=route,
        status=response.status,
        duration_ms=round(elapsed * 1000, 2),
    )
    return response


# What a lost or refused database connection raises. Any OSError met by a handler is one: no
# handler touches a file or a socket but the database's.
_CONNECTION_LOST = (
    OSError,
    asyncpg.PostgresConnectionError,  # class 08: the connection failed or was cut
    asyncpg.CannotConnectNowError,  # the server is starting up or shutting down
    asyncpg.AdminShutdownError,  # the server was stopped (fast) or the session terminated
    asyncpg.CrashShutdownError,
    asyncpg.TooManyConnectionsError,  # the server's max_connections is reached: retry shortly
    # A session the server cut while idle: asyncpg read the FATAL and waits for a ReadyForQuery
    # that never comes, so the next statement on it fails before it is sent
    # ("cannot switch to state 12; another operation (2) is in progress", MagicStack/asyncpg#784).
    asyncpg.InternalClientError,
)


def database_unavailable(exc: BaseException) -> bool:
    """Whether `exc` (or what it was raised from) says the database cannot be reached.

    asyncpg reports a session cut mid-request by whatever touches the dead connection next: a
    ConnectionDoesNotExistError, or an InterfaceError ("... connection is closed") from the
    transaction's exit, raised while handling the first.
    """
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, _CONNECTION_LOST):
            return True
        if isinstance(seen, asyncpg.InterfaceError) and str(seen).endswith("connection is closed"):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _database_unavailable_response(exc: BaseException) -> web.Response:
    # A warning, not a traceback per request: an outage would flood the log.
    log.warning("database unavailable", error=type(exc).__name__)
    return problem_response(
        Problem(
            "the database is unavailable; the request was not carried out unless a retry "
            "with the same Idempotency-Key says otherwise",
            slug="database-unavailable",
            title="Database unavailable, retry",
            status=503,
            headers={"Retry-After": "1"},
        )
    )


def not_implemented() -> Problem:
    return Problem(
        "this service implements GET, HEAD, POST, PATCH and DELETE (see /openapi.yaml)",
        slug="not-implemented",
        title="Method not implemented",
        status=501,
        headers={"Connection": "close"},
    )


@web.middleware
async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """One error shape: problems become problem+json; anything unexpected a bare 500."""
    if request.method not in _KNOWN_METHODS:
        # A method no route of any path has (CONNECT, WebDAV's, anything aiohttp's parser lets
        # through): not the resource's 405 or 404, but the server's 501 (RFC 9110 15.6.2).
        return problem_response(not_implemented())
    try:
        return await handler(request)
    except Problem as problem:
        return problem_response(problem)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        slug, title = _STATUS_SLUGS.get(exc.status, ("http-error", exc.reason))
        detail = {
            404: "no such resource",
            405: f"{request.method} is not allowed here",
            413: "the request body is larger than 64 KiB",
        }.get(exc.status, exc.reason)
        allow = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
        return problem_response(
            Problem(detail, slug=slug, title=title, status=exc.status, headers=allow)
        )
    except ClientGone:
        raise
    except (asyncpg.DeadlockDetectedError, asyncpg.SerializationError):
        # Lock ordering should make these impossible; if one happens the request did nothing
        # (its transaction rolled back) and may simply be retried.
        log.exception("database conflict, request rolled back")
        return problem_response(
            Problem(
                "the database was busy with a conflicting change; retry the request",
                slug="busy",
                title="Busy, retry",
                status=503,
                headers={"Retry-After": "1"},
            )
        )
    except Exception as exc:
        if database_unavailable(exc):
            return _database_unavailable_response(exc)
        log.exception("unhandled error")
        return problem_response(
            Problem(
                "the service failed to answer; the request id identifies it in the logs",
                slug="internal-error",
                title="Internal server error",
                status=500,
            )
        )


def _discard_body(request: web.Request) -> None:
    """Give up on the rest of a body we answered without: aiohttp would otherwise linger
    reading it after the answer (and log an undecodable one as an unhandled exception)."""
    request.content.feed_eof()


# Request bodies are capped (SPEC section 6): aiohttp's client_max_size, and a declared
# Content-Length over it is refused before any of the body is read.
MAX_BODY_BYTES = 64 * 1024

# Methods whose body the service reads; any other request's body is never read (aiohttp
# discards it), so 408 and 413 come only from operations that take a body.
BODY_METHODS = frozenset({"POST", "PATCH", "PUT"})


@web.middleware
async def read_body_in_time(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Reads the whole body before anything else, within BODY_TIMEOUT_SECONDS: a body that
    stalls is answered 408 and its connection closed, so it cannot hold a worker for ever;
    a client that goes away mid-body is not an error of ours."""
    if request.method in BODY_METHODS and request.body_exists:
        declared = request.content_length
        if declared is not None and declared > MAX_BODY_BYTES:
            # Answered at once: waiting for a body that will be refused anyway would hold the
            # connection until the body time-out.
            _discard_body(request)
            raise Problem(
                "the request body is larger than 64 KiB",
                slug="payload-too-large",
                title="Request body too large",
                status=413,
                headers={"Connection": "close"},
            )
        try:
            async with asyncio.timeout(request.app[keys.SETTINGS].body_timeout_seconds):
                await request.read()
        except TimeoutError:
            _discard_body(request)
            raise Problem(
                "the request body did not arrive in time; send it whole and promptly",
                slug="request-timeout",
                title="Request body timed out",
                status=408,
                headers={"Connection": "close"},
            ) from None
        except ConnectionError:
            raise ClientGone from None
        except (RequestPayloadError, HttpProcessingError):
            # A body that is not what its headers say (bad chunking, a Content-Encoding it
            # does not decode from): the client's fault, and nothing of it was read.
            _discard_body(request)
            raise Problem(
                "the request body could not be read: check Content-Encoding and framing",
                slug="malformed-body",
                title="Malformed request body",
                status=400,
                headers={"Connection": "close"},
            ) from None
    return await handler(request)


@web.middleware
async def authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Bearer API key on every route but the public ones; the key is never logged."""
    match_info = request.match_info
    if match_info.http_exception is not None or _route_roles(request) is None:
        return await handler(request)
    given = request.headers.getall("Authorization", [])
    if len(given) > 1:
        # Which key the request acts as must not depend on which header a parser or proxy
        # keeps: refused, like a query parameter given twice.
        raise ValidationProblem(
            "send one Authorization header",
            errors=[{"field": "Authorization", "message": "given more than once"}],
        )
    header = given[0] if given else ""
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise Unauthorized(
            "send your API key as `Authorization: Bearer <key>`",
            headers={"WWW-Authenticate": 'Bearer realm="places-of-safety"'},
        )
    row = None
    # Keys are printable ASCII; anything else (a byte that is not UTF-8 arrives as a lone
    # surrogate) is no key of ours and is answered like an unknown one, without a lookup.
    if token.isascii() and token.isprintable():
        at = request.app[keys.CLOCK].now()
        async with request.app[keys.POOL].acquire() as conn:
            row = await api_key_queries.authenticate(conn, hash_key(token), at)
    if row is None:
        raise Unauthorized(
            "the API key is unknown or revoked",
            headers={"WWW-Authenticate": 'Bearer realm="places-of-safety", error="invalid_token"'},
        )
    principal = Principal(
        key_id=row["id"],
        role=row["role"],
        force_code=row["force_code"],
        provider_id=row["provider_id"],
    )
    request[keys.PRINCIPAL] = principal
    structlog.contextvars.bind_contextvars(key_id=str(principal.key_id), role=principal.role)
    return await handler(request)


@web.middleware
async def authorize(request: web.Request, handler: Handler) -> web.StreamResponse:
    """403 when the caller's role may not call the route, before anything else about the
    request is looked at: an invalid body is not told what is wrong with it, and a forbidden
    call neither spends a rate budget nor leaves an Idempotency-Key answer to replay. The use
    cases check the role again (service.domain.access.require_role): this is the first door,
    not the only one."""
    if keys.PRINCIPAL in request:
        roles = _route_roles(request)
        if roles is not None:
            who = request[keys.PRINCIPAL]
            if not roles:
                raise Forbidden("no role may call this route")
            require_role(who, *sorted(roles))
    return await handler(request)
