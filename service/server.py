"""Serving the application: aiohttp's runner, with the service's own answer to what aiohttp's
HTTP parser refuses before any middleware runs.

aiohttp answers such a request itself (RequestHandler.handle_error): plain text quoting the
offending line (a header's value, perhaps a key), with aiohttp's and Python's versions in
`Server`, and no on_response_prepare hook runs for it (aio-libs/aiohttp#6463, #3287). There is
no public hook, so the protocol's handle_error is overridden here, and the runner builds its
server with that protocol.
"""

from __future__ import annotations

import asyncio
import json
import signal
import uuid
from collections.abc import Callable
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import BadHttpMethod
from aiohttp.web_request import BaseRequest

from service.errors import Problem
from service.middlewares import (
    PROBLEM_JSON,
    REQUEST_ID_HEADER,
    SERVER_NAME,
    not_implemented,
    security_headers,
)


def _refusal(status: int, exc: BaseException | None) -> Problem:
    if isinstance(exc, BadHttpMethod):
        return not_implemented()
    if status < 500:
        # Never the parser's message: it quotes what it refused.
        return Problem(
            "the request is not valid HTTP/1.1 (its request line or a header could not be "
            "read); nothing of it was acted on",
            slug="malformed-request",
            title="Malformed request",
            status=status,
        )
    return Problem(
        "the service failed to answer; nothing leaks, and the logs have the details",
        slug="internal-error",
        title="Internal server error",
        status=status,
    )


class _Protocol(web.RequestHandler):
    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        # aiohttp's own: logs it (scrubbed like every log line) and gives up on a connection
        # whose answer has begun. Its answer is replaced.
        super().handle_error(request, status, exc, message)
        problem = _refusal(status, exc)
        response = web.Response(
            body=json.dumps(problem.body()).encode(),
            status=problem.status,
            content_type=PROBLEM_JSON,
            headers={
                "Server": SERVER_NAME,
                REQUEST_ID_HEADER: str(uuid.uuid4()),
            },
        )
        security_headers(request.path, response)
        response.force_close()
        return response


class _Server(web.Server):
    def __call__(self) -> web.RequestHandler:
        return _Protocol(self, loop=self._loop, **self._kwargs)


class ServiceRunner(web.AppRunner):
    """web.AppRunner whose connections answer unparseable requests as the service does."""

    async def _make_server(self) -> web.Server:
        made = await super()._make_server()
        return _Server(
            made.request_handler,
            request_factory=made.request_factory,
            handler_cancellation=made.handler_cancellation,
            **made._kwargs,
        )


async def serve(
    app: web.Application,
    *,
    host: str,
    port: int,
    shutdown_timeout: float,
    on_listening: Callable[[str], None] = lambda url: None,
    **protocol: Any,
) -> None:
    """Serve until SIGTERM or SIGINT, then stop as web.run_app does: stop accepting, let
    in-flight requests finish (up to `shutdown_timeout`), run the app's cleanup.
    `on_listening` is told the address actually bound (PORT=0 takes any free port)."""
    runner = ServiceRunner(app, shutdown_timeout=shutdown_timeout, **protocol)
    await runner.setup()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        await web.TCPSite(runner, host, port).start()
        bound_host, bound_port = runner.addresses[0][:2]
        on_listening(f"http://{_url_host(bound_host)}:{bound_port}")
        await stop.wait()
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
        await runner.cleanup()


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host
