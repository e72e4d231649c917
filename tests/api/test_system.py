"""Health, readiness, metrics, the served contract and its docs page; routes == spec paths."""

from __future__ import annotations

import asyncio
import re

import yaml
from aiohttp import web

from service import keys
from service.app import create_app
from service.db import Pool
from service.settings import Settings
from tests.conftest import AppFactory
from tests.support.api import SPEC_PATH, Api
from tests.support.world import World

HTTP_METHODS = {"get", "post", "put", "patch", "delete"}


def _spec_operations() -> set[tuple[str, str]]:
    spec = yaml.safe_load(SPEC_PATH.read_text())
    return {
        (method.upper(), path)
        for path, item in spec["paths"].items()
        for method in item
        if method in HTTP_METHODS
    }


def _app_operations(app: web.Application) -> set[tuple[str, str]]:
    operations = set()
    for route in app.router.routes():
        resource = route.resource
        assert resource is not None
        path = resource.canonical
        if route.method == "HEAD":
            continue  # aiohttp adds HEAD beside every GET
        operations.add((route.method, path))
    return operations


def test_every_route_is_in_the_spec_and_every_spec_path_is_routed(settings: Settings) -> None:
    app = create_app(settings)
    assert _app_operations(app) == _spec_operations()


def test_the_spec_is_valid_openapi_3_1() -> None:
    from openapi_spec_validator import validate
    from openapi_spec_validator.readers import read_from_filename

    document, _ = read_from_filename(str(SPEC_PATH))
    validate(document)
    assert document["openapi"].startswith("3.1")


async def test_health_and_readiness(api: Api) -> None:
    health = await api.get("/healthz")
    assert (health.status, health.body) == (200, {"status": "ok"})
    ready = await api.get("/readyz")
    assert (ready.status, ready.body) == (200, {"status": "ready"})


async def test_readiness_answers_while_every_pooled_connection_is_busy(
    make_api: AppFactory,
) -> None:
    """Issue 14 item 4: /readyz has a connection of its own, so request work queued on the
    pool (a herd of woken long polls, a slow report) never makes the service look dead."""
    api = await make_api(settings_overrides={"db_pool_min": 2, "db_pool_max": 2})
    pool = api.client.server.app[keys.POOL]
    held = [await pool.acquire() for _ in range(2)]
    try:
        # Answered while both are still held (a wait for the pool would never end).
        ready = await asyncio.wait_for(api.get("/readyz"), 10)
    finally:
        for conn in held:
            await pool.release(conn)
    assert (ready.status, ready.body) == (200, {"status": "ready"})


async def test_not_ready_when_migrations_are_missing(
    settings: Settings, fresh_database: str
) -> None:
    from aiohttp.test_utils import TestClient, TestServer

    app = create_app(
        settings.model_copy(update={"database_url": fresh_database}), dsn=fresh_database
    )
    async with TestClient(TestServer(app)) as client:
        api = Api(client)
        ready = await api.get("/readyz")
        health = await api.get("/healthz")
    assert ready.status == 503 and ready.problem_type == "not-ready"
    assert "behind" in ready.body["detail"]
    assert health.status == 200


async def test_metrics_count_requests_by_route(api: Api, make_api: AppFactory) -> None:
    await api.get("/healthz")
    await api.get("/v1/sites/abc")
    reply = await api.get("/metrics")
    assert reply.status == 200
    text = reply.raw.decode()
    assert 'pos_http_requests_total{method="GET",route="/healthz",status="200"} 1.0' in text
    assert 'route="/v1/sites/{site_id}",status="401"' in text
    assert "pos_http_request_duration_seconds_bucket" in text


async def test_the_contract_and_its_docs_are_served(api: Api) -> None:
    spec = await api.get("/openapi.yaml")
    assert spec.status == 200 and spec.raw == SPEC_PATH.read_bytes()
    docs = await api.get("/docs")
    assert docs.status == 200 and docs.content_type == "text/html"
    page = docs.raw.decode()
    assert '<script src="/docs/static/docs.js"></script>' in page
    asset = await api.get("/docs/static/swagger-ui-bundle.js")
    assert asset.status == 200 and len(asset.raw) > 100_000
    missing = await api.get("/docs/static/nothing.js")
    assert missing.status == 404


def _directives(policy: str) -> dict[str, list[str]]:
    parsed = (d.split() for d in policy.split(";") if d.strip())
    return {words[0]: words[1:] for words in parsed}


async def test_the_docs_page_runs_under_a_strict_content_security_policy(api: Api) -> None:
    docs = await api.get("/docs")
    assert docs.status == 200
    csp = _directives(docs.headers["Content-Security-Policy"])
    assert csp["default-src"] == ["'none'"] or csp["default-src"] == ["'self'"]
    assert csp["script-src"] == ["'self'"], "no inline or eval'd script"
    assert csp["frame-ancestors"] == ["'none'"]
    assert csp["object-src"] == ["'none'"] and csp["base-uri"] == ["'none'"]
    assert docs.headers["X-Frame-Options"] == "DENY"
    assert docs.headers["X-Content-Type-Options"] == "nosniff"
    page = docs.raw.decode()
    # Nothing inline for the policy to refuse: every script and style comes from a file.
    scripts = re.findall(r"<script([^>]*)>(.*?)</script>", page, flags=re.S)
    assert scripts and all('src="' in attrs and not body.strip() for attrs, body in scripts)
    assert "<style" not in page and " style=" not in page and "javascript:" not in page
    for asset in re.findall(r'(?:src|href)="(/docs/static/[^"]+)"', page):
        reply = await api.get(asset)
        assert reply.status == 200, asset
        assert reply.headers["X-Content-Type-Options"] == "nosniff"
    init = await api.get("/docs/static/docs.js")
    assert init.status == 200 and b'url: "/openapi.yaml"' in init.raw
    assert init.content_type == "text/javascript"


async def test_every_html_answer_gets_the_page_policy_by_its_content_type(
    make_api: AppFactory,
) -> None:
    """The console's pages will be HTML too: the policy follows the content type, not a list
    of routes."""

    async def page(request: web.Request) -> web.Response:
        return web.Response(text="<!DOCTYPE html><title>x</title>", content_type="text/html")

    def add_page(app: web.Application) -> None:
        app.router.add_get("/some-page", page)
        app[keys.ROUTE_ROLES] = {**app[keys.ROUTE_ROLES], ("GET", "/some-page"): None}

    api = await make_api(customise=add_page, check_contract=False)
    reply = await api.get("/some-page")
    assert reply.status == 200
    assert _directives(reply.headers["Content-Security-Policy"])["frame-ancestors"] == ["'none'"]
    assert reply.headers["X-Frame-Options"] == "DENY"
    assert reply.headers["X-Content-Type-Options"] == "nosniff"


async def test_every_json_answer_is_nosniff_and_no_v1_answer_is_stored(api: Api, db: Pool) -> None:
    world = await World.create(api, db)
    site = await world.site()
    replies = [
        await api.get("/healthz"),
        await api.get("/v1/forces", key=world.officer),
        await api.get(f"/v1/sites/{site['id']}", key=world.provider),  # an address
        await api.get("/v1/forces"),  # 401
        await api.get("/v1/nothing-here", key=world.officer, contract=False),  # 404
        await api.request("PUT", "/v1/forces", key=world.officer, contract=False),  # 405
        await api.post("/v1/forces", {"code": "x"}, key=world.officer),  # 403
    ]
    for reply in replies:
        assert reply.content_type in ("application/json", "application/problem+json")
        assert reply.headers["X-Content-Type-Options"] == "nosniff", reply.status
        csp = _directives(reply.headers["Content-Security-Policy"])
        assert csp["default-src"] == ["'none'"] and csp["frame-ancestors"] == ["'none'"]
    for reply in replies[1:]:
        assert reply.headers["Cache-Control"] == "no-store", reply.status
