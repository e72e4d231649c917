"""Health, readiness, metrics and the API description: open to everyone, no key needed."""

from __future__ import annotations

import asyncio
import html
from pathlib import Path

import structlog
from aiohttp import web
from swagger_ui.utils import SWAGGER_UI_PY_ROOT

from service import keys
from service.errors import NotFound, Unavailable
from service.handlers.common import json_response
from service.migrate import is_current
from service.models import Health

log = structlog.get_logger(__name__)

READY_TIMEOUT_SECONDS = 2.0

# Swagger UI 5 (OpenAPI 3.1 aware), served from the swagger-ui-py wheel: no CDN, works offline;
# and the script that starts it, from this package (the page has no inline script, so its
# Content-Security-Policy allows scripts from this origin only).
SWAGGER_UI_STATIC = SWAGGER_UI_PY_ROOT / "static"
OWN_STATIC = Path(__file__).resolve().parent.parent / "static"
DOCS_ASSETS = {
    "swagger-ui-bundle.js": (SWAGGER_UI_STATIC, "text/javascript"),
    "swagger-ui.css": (SWAGGER_UI_STATIC, "text/css"),
    "favicon-32x32.png": (SWAGGER_UI_STATIC, "image/png"),
    "docs.js": (OWN_STATIC, "text/javascript"),
}

DOCS_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>{title}</title>
  <link rel="stylesheet" href="/docs/static/swagger-ui.css">
  <link rel="icon" type="image/png" href="/docs/static/favicon-32x32.png">
</head>
<body>
  <noscript>The API description is at <a href="/openapi.yaml">/openapi.yaml</a>.</noscript>
  <div id="swagger-ui"></div>
  <script src="/docs/static/swagger-ui-bundle.js"></script>
  <script src="/docs/static/docs.js"></script>
</body>
</html>
"""


async def healthz(request: web.Request) -> web.Response:
    """The process is up and answering; says nothing of the database."""
    return json_response(Health(status="ok"))


async def readyz(request: web.Request) -> web.Response:
    """Ready for traffic: the database answers and has every migration this code needs. On a
    connection of its own (issue 14 item 4): busy request work is not "not ready"."""
    try:
        async with asyncio.timeout(READY_TIMEOUT_SECONDS):
            async with request.app[keys.READY_POOL].acquire() as conn:
                current = await is_current(conn)
    except Exception as exc:  # whatever the failure, the answer is "not ready"
        log.warning("readiness check failed", error=type(exc).__name__)
        raise Unavailable(
            f"the database does not answer ({type(exc).__name__})", slug="not-ready"
        ) from None
    if not current:
        raise Unavailable("the database schema is behind this code", slug="not-ready")
    return json_response(Health(status="ready"))


async def metrics(request: web.Request) -> web.Response:
    registry = request.app[keys.METRICS]
    return web.Response(body=registry.render(), headers={"Content-Type": registry.content_type})


async def openapi(request: web.Request) -> web.Response:
    return web.Response(text=request.app[keys.OPENAPI_TEXT], content_type="application/yaml")


async def docs_asset(request: web.Request) -> web.FileResponse:
    asset = DOCS_ASSETS.get(request.match_info["filename"])
    if asset is None:
        raise NotFound("no such documentation asset")
    directory, content_type = asset
    return web.FileResponse(
        directory / request.match_info["filename"],
        headers={"Content-Type": content_type, "Cache-Control": "public, max-age=86400"},
    )


async def docs(request: web.Request) -> web.Response:
    return web.Response(
        text=DOCS_PAGE.format(title=html.escape("Places of Safety API")),
        content_type="text/html",
    )
