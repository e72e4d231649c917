"""What arrives on the wire before a handler runs: malformed header lines, clients that go away,
bodies that never finish. Sent over raw sockets, because a well-behaved client cannot."""

from __future__ import annotations

import asyncio
import io
import json
import time

import pytest

from tests.conftest import AppFactory
from tests.support.api import Api
from tests.support.until import until
from tests.support.world import World

DEADLINE_SECONDS = 10.0


def _port(api: Api) -> int:
    port = api.client.server.port
    assert port is not None
    return port


async def _exchange(api: Api, raw: bytes) -> bytes:
    """Send raw bytes; return whatever the server answers before it closes."""
    reader, writer = await asyncio.open_connection("127.0.0.1", _port(api))
    try:
        writer.write(raw)
        await writer.drain()
        return await asyncio.wait_for(reader.read(65536), DEADLINE_SECONDS)
    finally:
        writer.close()


async def _metric_sum(api: Api, name: str) -> float:
    """The sum of one Prometheus metric's samples over every label set (0 when unseen)."""
    text = (await api.get("/metrics")).raw.decode()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith((name + " ", name + "{"))
    )


@pytest.mark.parametrize(
    "bad_line",
    [
        b"Authorization: Bearer {key}\x01",
        b"Authorization: Bearer\x01 {key}",
        b"X-Note\x01: Bearer {key}",
    ],
    ids=["control-after-key", "control-before-key", "bad-header-name"],
)
async def test_a_malformed_header_line_never_logs_the_key(
    world: World, log_output: io.StringIO, bad_line: bytes
) -> None:
    key = world.officer.encode()
    idem = b"idem-VERY-PRIVATE-9931"
    raw = (
        b"POST /v1/bookings HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        + bad_line.replace(b"{key}", key)
        + b"\r\nIdempotency-Key: "
        + idem
        + b"\r\nContent-Length: 2\r\n\r\n{}"
    )
    answer = await _exchange(world.api, raw)
    assert answer.split(b" ", 2)[1] in (b"400", b"401"), answer[:200]
    output = log_output.getvalue()
    assert world.officer not in output
    assert world.officer[4:20] not in output
    assert idem.decode() not in output


async def test_a_key_anywhere_in_any_logger_is_redacted(log_output: io.StringIO) -> None:
    import logging

    import structlog

    secret = "pos_0123456789abcdefghijABCDEFGHIJ_-xyz"
    logging.getLogger("aiohttp.server").error(
        "Error handling request: b'Authorization: Bearer %s\\x01'", secret
    )
    logging.getLogger("somewhere").warning("idempotency-key=%s", "my-private-idem")
    structlog.get_logger("service.x").info("event", detail=f"token {secret}")
    try:
        raise ValueError(f"while hashing {secret}")
    except ValueError:
        logging.getLogger("asyncio").exception("boom")
    logging.getLogger("x").warning("phone=07700 900123, address: 1 Acacia Road; done")
    logging.getLogger("x").warning("Authorization: Basic dXNlcjpzZWNyZXRwYXNz")
    logging.getLogger("x").warning("raw %r", b"Authorization: Bearer\x7fsomeothertoken99")
    structlog.get_logger("x").info("nested", booking={"notes": None, "phone": 12345, "n": 1})
    structlog.get_logger("x").info("said", text='"notes": "Victim\'s address is 9 Elm Rd"')
    try:
        raise ValueError(
            'new row violates check constraint\nDETAIL:  Failing row contains (PERSON-77, "Elm")'
        )
    except ValueError:
        logging.getLogger("asyncpg").exception("insert failed")
    output = log_output.getvalue()
    assert secret not in output and secret[4:16] not in output
    for private in (
        "my-private-idem",
        "900123",
        "Acacia",
        "dXNlcjpzZWNyZXRwYXNz",
        "someothertoken99",
        "12345",
        "Elm Rd",
        "PERSON-77",
    ):
        assert private not in output, private
    assert "done" in output and "violates check constraint" in output
    assert output.count("[redacted]") >= 4
    assert all(json.loads(line) for line in output.splitlines())


async def test_a_client_that_goes_away_mid_body_is_not_a_500(
    world: World, log_output: io.StringIO
) -> None:
    api = world.api
    before = await _metric_sum(api, "pos_http_client_disconnects_total")
    # Expect: 100-continue makes the server say when the request is being handled, so the
    # client goes away mid-body for certain rather than before the server looked.
    reader, writer = await asyncio.open_connection("127.0.0.1", _port(api))
    writer.write(
        b"POST /v1/sites HTTP/1.1\r\nHost: 127.0.0.1\r\nExpect: 100-continue\r\n"
        b"Authorization: Bearer " + world.provider.encode() + b"\r\n"
        b"Content-Type: application/json\r\nContent-Length: 5000\r\n\r\n"
    )
    await writer.drain()
    interim = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), DEADLINE_SECONDS)
    assert interim.startswith(b"HTTP/1.1 100"), interim
    writer.write(b'{"name": "half a bo')
    await writer.drain()
    writer.close()

    async def counted() -> bool:
        return await _metric_sum(api, "pos_http_client_disconnects_total") > before

    await until(counted, DEADLINE_SECONDS, what="the disconnect to be counted")
    assert "unhandled error" not in log_output.getvalue()
    metrics = (await api.get("/metrics")).raw.decode()
    assert 'status="500"' not in metrics


async def test_a_stalled_body_is_timed_out_with_408(make_api: AppFactory, world: World) -> None:
    api = await make_api(settings_overrides={"body_timeout_seconds": 0.3})
    raw = (
        b"POST /v1/sites HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Authorization: Bearer " + world.provider.encode() + b"\r\n"
        b"Content-Type: application/json\r\nContent-Length: 5000\r\n\r\n"
        b'{"name": "st'
    )
    started = time.monotonic()
    answer = await _exchange(api, raw)
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert b"application/problem+json" in answer
    assert b"Connection: close" in answer
    assert time.monotonic() - started < DEADLINE_SECONDS


@pytest.mark.parametrize(
    "framing",
    [
        b"Transfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n",
        b"Content-Encoding: gzip\r\nContent-Length: 10\r\n\r\nnotgzip!!!",
        b"Content-Encoding: deflate\r\nContent-Length: 10\r\n\r\nnotdeflat!",
    ],
    ids=["bad-chunk", "bad-gzip", "bad-deflate"],
)
@pytest.mark.parametrize("with_key", [True, False], ids=["key", "no-key"])
async def test_a_body_that_cannot_be_decoded_is_400(
    world: World, log_output: io.StringIO, framing: bytes, with_key: bool
) -> None:
    auth = b"Authorization: Bearer " + world.provider.encode() + b"\r\n" if with_key else b""
    raw = (
        b"POST /v1/sites HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        + auth
        + b"Content-Type: application/json\r\n"
        + framing
    )
    answer = await _exchange(world.api, raw)
    assert answer.split(b" ", 2)[1] == b"400", answer[:300]
    # Nor does aiohttp go on reading the bad body after the answer (an ERROR per request).
    assert "unhandled error" not in log_output.getvalue().lower()
    assert '"level": "error"' not in log_output.getvalue()


def _head_and_body(answer: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(lines[0].split(" ", 2)[1]), headers, body


@pytest.mark.parametrize("with_key", [True, False], ids=["key", "no-key"])
async def test_a_declared_body_over_the_cap_is_413_at_once(
    make_api: AppFactory, world: World, with_key: bool
) -> None:
    """No need to wait for a body the service would refuse anyway (it used to wait for the
    body time-out and answer 408): the answer comes long before the body time-out could."""
    api = await make_api(settings_overrides={"body_timeout_seconds": 6 * DEADLINE_SECONDS})
    auth = b"Authorization: Bearer " + world.provider.encode() + b"\r\n" if with_key else b""
    raw = (
        b"POST /v1/sites HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        + auth
        + b"Content-Type: application/json\r\nContent-Length: 10000000\r\n\r\n{"
    )
    # _exchange gives up after DEADLINE_SECONDS, a sixth of the body time-out.
    status, headers, body = _head_and_body(await _exchange(api, raw))
    assert status == 413
    assert headers["content-type"] == "application/problem+json"
    assert headers["connection"] == "close"
    assert json.loads(body)["type"].endswith(":payload-too-large")


@pytest.mark.parametrize(
    "raw",
    [
        b"GET /v1/forces HTTP/1.1\r\nHost: x\r\nX-Note: a\x01SECRET-VALUE-77\r\n\r\n",
        b"GET /v1/forces HTTP/1.1\r\nHost: x\r\nX-No\x01te-SECRET-VALUE-77: a\r\n\r\n",
        b"GET /v1/forces HTTP/1.1\r\nHost: x\r\nContent-Length: SECRET-VALUE-77\r\n\r\n",
        b"GET /v1/forces?SECRET-VALUE-77=\x01 HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /v1/forces HTTP/9.9\r\nHost: x\r\nX-Secret: SECRET-VALUE-77\r\n\r\n",
    ],
    ids=["header-value", "header-name", "content-length", "request-target", "version"],
)
async def test_what_the_http_parser_refuses_is_a_problem_that_echoes_nothing(
    world: World, raw: bytes
) -> None:
    status, headers, body = _head_and_body(await _exchange(world.api, raw))
    assert status == 400, body
    assert headers["server"] == "places-of-safety", "no aiohttp or Python version"
    assert headers["content-type"] == "application/problem+json"
    assert headers["x-content-type-options"] == "nosniff"
    assert b"SECRET-VALUE-77" not in body
    problem = json.loads(body)
    assert (problem["status"], problem["type"]) == (
        400,
        "urn:places-of-safety:problem:malformed-request",
    )


@pytest.mark.parametrize(
    "request_line",
    [
        b"CONNECT example.org:443 HTTP/1.1",
        b"CONNECT /v1/forces HTTP/1.1",
        b"FOO /v1/forces HTTP/1.1",
        b"PROPFIND /v1/forces HTTP/1.1",
        b"BREW /nothing HTTP/1.1",
    ],
    ids=["connect-authority", "connect-path", "unknown", "webdav", "unknown-elsewhere"],
)
async def test_a_method_the_service_implements_nowhere_is_501(
    world: World, request_line: bytes
) -> None:
    raw = request_line + b"\r\nHost: x\r\nAuthorization: Bearer " + world.admin.encode()
    status, headers, body = _head_and_body(await _exchange(world.api, raw + b"\r\n\r\n"))
    assert status == 501, body
    assert headers["server"] == "places-of-safety"
    assert headers["content-type"] == "application/problem+json"
    assert json.loads(body)["type"] == "urn:places-of-safety:problem:not-implemented"


async def test_a_known_method_a_route_lacks_is_still_405_with_allow(world: World) -> None:
    raw = b"PUT /v1/forces HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"
    status, headers, _ = _head_and_body(await _exchange(world.api, raw))
    assert status == 405
    assert headers["allow"] == "GET,HEAD,POST"
    assert headers["content-type"] == "application/problem+json"
