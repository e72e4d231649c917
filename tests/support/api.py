"""An HTTP client for the running test server that checks every exchange against openapi.yaml.

Every response must be one the contract describes (status, media type, body schema); every
request the service accepted (2xx) must be one the contract allows. So each API test is also
a contract test.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

import yaml
from aiohttp.test_utils import TestClient
from multidict import CIMultiDictProxy
from openapi_core import Config, OpenAPI
from openapi_core.testing import MockRequest, MockResponse

SPEC_PATH = Path(__file__).resolve().parents[2] / "openapi.yaml"
SPEC_HOST = "http://127.0.0.1:8080"


@cache
def spec() -> OpenAPI:
    # problem+json is JSON too, and YAML is text; openapi-core needs telling.
    config = Config(
        extra_media_type_deserializers={
            "application/problem+json": lambda raw: json.loads(raw),
            "application/yaml": lambda raw: raw.decode(),
            "text/yaml": lambda raw: raw.decode(),
            "text/javascript": lambda raw: raw.decode(),
            "text/css": lambda raw: raw.decode(),
        }
    )
    return OpenAPI.from_file_path(str(SPEC_PATH), config=config)


@cache
def problem_members() -> frozenset[str]:
    """The members openapi.yaml's Problem declares: every one the service may send."""
    document = yaml.safe_load(SPEC_PATH.read_text())
    return frozenset(document["components"]["schemas"]["Problem"]["properties"])


class ContractViolation(AssertionError):
    pass


@dataclass
class Reply:
    status: int
    headers: CIMultiDictProxy[str]
    raw: bytes
    content_type: str
    body: Any = field(default=None)

    @property
    def problem_type(self) -> str:
        assert self.content_type == "application/problem+json", self.content_type
        return str(self.body["type"]).rsplit(":", 1)[-1]

    def field_names(self) -> set[str]:
        return {e["field"] for e in self.body.get("errors", [])}


class Api:
    def __init__(self, client: TestClient[Any, Any], *, check_contract: bool = True) -> None:
        self.client = client
        self.check_contract = check_contract

    async def request(
        self,
        method: str,
        path: str,
        *,
        key: str | None = None,
        json_body: Any = None,
        data: bytes | None = None,
        params: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        content_type: str = "application/json",
        contract: bool = True,
    ) -> Reply:
        sent_headers = dict(headers or {})
        if key is not None:
            sent_headers["Authorization"] = f"Bearer {key}"
        body = data
        if json_body is not None:
            body = json.dumps(json_body).encode()
        if body is not None:
            sent_headers.setdefault("Content-Type", content_type)
        path, _, inline_query = path.partition("?")
        query = dict(parse_qsl(inline_query))
        query.update({k: _param(v) for k, v in (params or {}).items() if v is not None})
        url = path + ("?" + urlencode(query) if query else "")
        async with self.client.request(method, url, data=body, headers=sent_headers) as resp:
            raw = await resp.read()
            reply = Reply(
                status=resp.status,
                headers=resp.headers,
                raw=raw,
                content_type=resp.content_type,
            )
        if reply.content_type in ("application/json", "application/problem+json") and raw:
            reply.body = json.loads(raw)
        if self.check_contract and contract:
            _check(method, path, query, sent_headers, body, reply)
        return reply

    async def get(self, path: str, **kw: Any) -> Reply:
        return await self.request("GET", path, **kw)

    async def post(self, path: str, body: Any = None, **kw: Any) -> Reply:
        return await self.request("POST", path, json_body=body, **kw)

    async def patch(self, path: str, body: Any = None, **kw: Any) -> Reply:
        return await self.request("PATCH", path, json_body=body, **kw)

    async def delete(self, path: str, **kw: Any) -> Reply:
        return await self.request("DELETE", path, **kw)

    async def all_items(
        self, path: str, *, key: str, params: dict[str, Any] | None = None, limit: int = 200
    ) -> list[Any]:
        """Every item of a paged list, following next_cursor to the end."""
        items: list[Any] = []
        cursor = None
        while True:
            reply = await self.get(
                path, key=key, params={**(params or {}), "limit": limit, "cursor": cursor}
            )
            assert reply.status == 200, reply.body
            items.extend(reply.body["items"])
            cursor = reply.body["next_cursor"]
            if cursor is None:
                return items


def _param(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if hasattr(value, "isoformat"):
        return str(value.isoformat())
    return str(value)


def _check(
    method: str,
    path: str,
    query: dict[str, str],
    headers: dict[str, str],
    body: bytes | None,
    reply: Reply,
) -> None:
    request = MockRequest(
        SPEC_HOST,
        method,
        path,
        args=query,
        headers=headers,
        data=body,
        content_type=headers.get("Content-Type", "application/json").split(";")[0],
    )
    response = MockResponse(
        reply.raw,
        status_code=reply.status,
        headers=dict(reply.headers),
        content_type=reply.content_type,
    )
    api = spec()
    errors: list[Any] = list(api.iter_response_errors(request, response))
    if reply.content_type == "application/problem+json" and isinstance(reply.body, dict):
        # Problem stays open to members added later, so the schema alone would let an
        # undeclared one through; a generated client keeps those only as untyped extras.
        undeclared = sorted(set(reply.body) - problem_members())
        if undeclared:
            errors.append(f"problem members not declared in Problem: {undeclared}")
    if 200 <= reply.status < 300:
        errors += list(api.iter_request_errors(request))
    if errors:
        details = "; ".join(
            f"{type(e).__name__}: {e} {getattr(e, '__cause__', '')}" for e in errors
        )
        raise ContractViolation(
            f"{method} {path} -> {reply.status} breaks openapi.yaml: {details[:2000]}\n"
            f"body: {reply.raw[:500]!r}"
        )
