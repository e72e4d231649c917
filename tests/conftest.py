"""Real PostgreSQL for every test: one fresh, migrated database per session, dropped at the end.

DATABASE_URL (a server DSN, e.g. postgresql://postgres@127.0.0.1:5432/postgres) picks the
server; without it an embedded PostgreSQL starts under .data/test. Tests never share data they
depend on: each makes its own force, provider and sites with random names.
"""

from __future__ import annotations

import asyncio
import io
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from aiohttp.web import BaseRunner

from service.app import create_app
from service.db import Pool, create_pool, ensure_database, start_embedded_server, with_database
from service.log import configure_logging
from service.migrate import migrate
from service.server import ServiceRunner
from service.settings import Settings
from tests.support.api import Api
from tests.support.clock import ManualClock
from tests.support.process import ROOT
from tests.support.world import World


def server_dsn() -> str:
    return os.environ.get("DATABASE_URL") or start_embedded_server(ROOT / ".data" / "test")


async def _create_database(server: str, name: str) -> None:
    await ensure_database(server, name)
    conn = await asyncpg.connect(with_database(server, name))
    try:
        await migrate(conn)
    finally:
        await conn.close()


async def drop_database(server: str, name: str) -> None:
    conn = await asyncpg.connect(server)
    try:
        quoted = await conn.fetchval("SELECT quote_ident($1)", name)
        await conn.execute(f"DROP DATABASE IF EXISTS {quoted} WITH (FORCE)")
    finally:
        await conn.close()


def pytest_configure(config: pytest.Config) -> None:
    configure_logging("warning", "json", cache=False)


@pytest.fixture
def log_output() -> Iterator[io.StringIO]:
    """The service's real log configuration (JSON, every level), writing to a buffer."""
    buffer = io.StringIO()
    configure_logging("debug", "json", stream=buffer, cache=False)
    yield buffer
    configure_logging("warning", "json", cache=False)


@pytest.fixture(scope="session")
def postgres_server() -> str:
    return server_dsn()


@pytest.fixture(scope="session")
def database_dsn(postgres_server: str) -> Iterator[str]:
    name = f"pos_test_{uuid.uuid4().hex[:12]}"
    asyncio.run(_create_database(postgres_server, name))
    yield with_database(postgres_server, name)
    asyncio.run(drop_database(postgres_server, name))


@pytest.fixture
def settings(database_dsn: str) -> Settings:
    # Stays up to 90 days ahead, as the suite was written before MAX_LEAD_HOURS (issue 14):
    # tests/api/test_insider.py holds the service to the default lead time.
    return Settings(
        database_url=database_dsn, seed_demo=False, db_pool_max=20, max_lead_hours=90 * 24
    )


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
async def db(database_dsn: str) -> AsyncIterator[Pool]:
    """A pool on the test database, for setting up and checking state beside the API."""
    pool = await create_pool(database_dsn, min_size=1, max_size=5)
    yield pool
    await pool.close()


@pytest.fixture
async def fresh_database(postgres_server: str) -> AsyncIterator[str]:
    """An empty database of this test's own (no migrations), dropped afterwards."""
    name = f"pos_t_{uuid.uuid4().hex[:12]}"
    await ensure_database(postgres_server, name)
    yield with_database(postgres_server, name)
    await drop_database(postgres_server, name)


AppFactory = Callable[..., Awaitable[Api]]


class ServiceTestServer(TestServer):
    """aiohttp's TestServer, but run as `pos serve` runs: by the service's runner (its answer
    to what the HTTP parser refuses), and a handler whose client goes away is not cancelled
    (aiohttp's test server would), so tests see what production does."""

    async def _make_runner(self, **kwargs: Any) -> BaseRunner:
        kwargs["handler_cancellation"] = False
        return ServiceRunner(self.app, **kwargs)


@pytest.fixture
async def make_api(
    settings: Settings, clock: ManualClock, database_dsn: str
) -> AsyncIterator[AppFactory]:
    """Start the real app on a loopback port; returns a contract-checking client."""
    clients: list[TestClient[Any, Any]] = []

    async def start(
        *,
        settings_overrides: dict[str, Any] | None = None,
        app_clock: Any = None,
        customise: Callable[[web.Application], None] | None = None,
        check_contract: bool = True,
        run_jobs: bool = False,
    ) -> Api:
        app_settings = settings.model_copy(update=settings_overrides or {})
        # The expiry job is off unless a test asks for it: tests drive expiry by the clock
        # and call the sweep themselves, so nothing runs behind their backs.
        app = create_app(
            app_settings, clock=app_clock or clock, dsn=database_dsn, run_jobs=run_jobs
        )
        if customise is not None:
            customise(app)
        client: TestClient[Any, Any] = TestClient(ServiceTestServer(app, host="127.0.0.1"))
        await client.start_server()
        clients.append(client)
        return Api(client, check_contract=check_contract)

    yield start
    for client in clients:
        await client.close()


@pytest.fixture
async def api(make_api: AppFactory) -> Api:
    return await make_api()


@pytest.fixture
async def world(api: Api, db: Pool) -> World:
    """An admin, a force with an officer, and a provider with a site: fresh for each test."""
    return await World.create(api, db)
