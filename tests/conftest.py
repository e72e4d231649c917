"""Real PostgreSQL for every test: a database of each worker's own, dropped at the end.

DATABASE_URL (a server DSN, e.g. postgresql://postgres@127.0.0.1:5432/postgres) picks the
server; without it an embedded PostgreSQL starts under .data/test. Tests never share data they
depend on: each makes its own force, provider and sites with random names.

The suite runs on several processes (pytest-xdist, `make pytest`), or on one (`-n 0`). The
run's first process to need a database migrates a template, under a server-side advisory lock
so its siblings wait rather than race; each process then clones it (CREATE DATABASE ...
TEMPLATE: a file copy, well under a second) into a database of its own. The template's name
holds a digest of the migrations and the run's id, so runs on one server (two checkouts, CI)
never share one; each process drops it when it ends, the last one to go for good.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from aiohttp.web import BaseRunner

from service.app import create_app
from service.db import Pool, create_pool, ensure_database, start_embedded_server, with_database
from service.log import configure_logging
from service.migrate import load_migrations, migrate
from service.server import ServiceRunner
from service.settings import Settings
from tests.support.api import Api
from tests.support.clock import ManualClock
from tests.support.process import ROOT
from tests.support.world import World


def server_dsn() -> str:
    return os.environ.get("DATABASE_URL") or start_embedded_server(ROOT / ".data" / "test")


# (class, object) of the advisory lock around a template, taken in the server DSN's database:
# a class of its own, apart from the service's (service.migrate.LOCK_CLASS).
TEMPLATE_LOCK_CLASS = 0x504F54


def template_name(run_id: str) -> str:
    """The migrated template of this run: the migrations' digest, then the run's id."""
    digest = hashlib.sha256("".join(m.checksum for m in load_migrations()).encode()).hexdigest()
    return f"pos_tpl_{digest[:10]}_{run_id[:12]}"


def run_id(config: pytest.Config) -> str:
    """One id for the whole run: xdist gives its workers the controller's; alone, a new one."""
    workerinput: dict[str, Any] | None = getattr(config, "workerinput", None)
    if workerinput is not None:
        return str(workerinput["testrunuid"])
    return uuid.uuid4().hex


async def _quoted(conn: asyncpg.Connection[Any], name: str) -> str:
    # Identifiers cannot be parameters; quote_ident makes the name safe.
    quoted: str = await conn.fetchval("SELECT quote_ident($1)", name)
    return quoted


@asynccontextmanager
async def _template_lock(conn: asyncpg.Connection[Any], template: str) -> AsyncIterator[None]:
    lock = "SELECT pg_advisory_lock($1, hashtext($2))"
    await conn.execute(lock, TEMPLATE_LOCK_CLASS, template)
    try:
        yield
    finally:
        await conn.execute(lock.replace("lock(", "unlock("), TEMPLATE_LOCK_CLASS, template)


async def clone_template(server: str, template: str, name: str) -> None:
    """Create database `name` as a copy of `template`, migrating the template first if this is
    the run's first process to get here (its siblings wait on the lock, then find it made)."""
    conn = await asyncpg.connect(server)
    try:
        async with _template_lock(conn, template):
            quoted = await _quoted(conn, template)
            if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", template):
                await conn.execute(f"CREATE DATABASE {quoted}")
                try:
                    migrating = await asyncpg.connect(with_database(server, template))
                    try:
                        await migrate(migrating)
                    finally:
                        await migrating.close()
                except BaseException:
                    # Never leave a half-migrated template for a sibling to copy.
                    await conn.execute(f"DROP DATABASE IF EXISTS {quoted} WITH (FORCE)")
                    raise
            # Waits (up to 5 s) for the migrating connection's backend to end.
            await conn.execute(f"CREATE DATABASE {await _quoted(conn, name)} TEMPLATE {quoted}")
    finally:
        await conn.close()


async def drop_template(server: str, template: str) -> None:
    """Drop this run's template. A sibling still running that later needs it makes it again."""
    conn = await asyncpg.connect(server)
    try:
        async with _template_lock(conn, template):
            await conn.execute(f"DROP DATABASE IF EXISTS {await _quoted(conn, template)}")
    finally:
        await conn.close()


async def drop_database(server: str, name: str) -> None:
    conn = await asyncpg.connect(server)
    try:
        await conn.execute(f"DROP DATABASE IF EXISTS {await _quoted(conn, name)} WITH (FORCE)")
    finally:
        await conn.close()


def pytest_configure(config: pytest.Config) -> None:
    configure_logging("warning", "json", cache=False)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Slow tests first (the sort keeps the order within each part): on several workers the
    long ones start at once, rather than one of them ending the run on a single worker."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


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
def database_dsn(postgres_server: str, request: pytest.FixtureRequest) -> Iterator[str]:
    """This process's own migrated database, for the whole session."""
    template = template_name(run_id(request.config))
    name = f"pos_test_{uuid.uuid4().hex[:12]}"
    asyncio.run(clone_template(postgres_server, template, name))
    yield with_database(postgres_server, name)
    asyncio.run(drop_database(postgres_server, name))
    asyncio.run(drop_template(postgres_server, template))


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


@pytest.fixture
async def migrated_database(fresh_database: str) -> str:
    """A migrated database of this test's own, for a module whose tests must see no other
    test's rows (override `database_dsn` with it)."""
    conn = await asyncpg.connect(fresh_database)
    try:
        await migrate(conn)
    finally:
        await conn.close()
    return fresh_database


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
