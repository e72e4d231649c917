"""The `pos` commands: serve, migrate, seed-demo, api-key create|list|revoke, purge."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any, TextIO
from uuid import UUID

import asyncpg
from pydantic import ValidationError

from service import keys, stopping
from service.app import create_app, policy
from service.clock import SystemClock
from service.db import (
    Connection,
    NestedDataDir,
    Pool,
    create_pool,
    describe_database,
    resolve_dsn,
)
from service.demo import DemoKey, live_demo_keys, seed_demo
from service.errors import NotFound, ValidationProblem
from service.log import configure_logging
from service.migrate import is_current, migrate
from service.queries import api_keys
from service.server import serve
from service.settings import Settings, load_settings
from service.text import refused_character
from service.usecases import purge as erasure
from service.usecases.api_keys import (
    IssuedKey,
    NewKey,
    check_scope_exists,
    issue_key,
    revoke_key,
)
from service.usecases.purge import Batch
from service.usecases.tx import ReadTx, Tx
from service.usecases.uow import CLI, Units, UseCase
from service.vocab import Role

Command = Callable[[argparse.Namespace, Settings], Coroutine[Any, Any, int]]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pos",
        description="Places of Safety booking service. Configuration comes from environment "
        "variables (see README.md).",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="migrate, then serve HTTP on HOST:PORT")
    serve.add_argument("--no-migrate", action="store_true", help="do not apply migrations first")
    serve.add_argument(
        "--no-seed", action="store_true", help="do not seed the demo data (same as SEED_DEMO=false)"
    )

    commands.add_parser("migrate", help="apply pending migrations and exit")
    commands.add_parser("seed-demo", help="load the demo data set (once; development only)")
    commands.add_parser(
        "purge",
        help="erase personal fields of bookings that ended PERSONAL_DATA_RETENTION_DAYS ago, "
        "and Idempotency-Key answers older than IDEMPOTENCY_TTL_HOURS",
    )

    key = commands.add_parser("api-key", help="create, list or revoke API keys")
    key_commands = key.add_subparsers(dest="key_command", required=True)
    create = key_commands.add_parser(
        "create", help="create a key; its secret alone on stdout (the rest on stderr)"
    )
    create.add_argument("--role", required=True, choices=["admin", "officer", "provider"])
    create.add_argument("--force", help="force code (officer keys)")
    create.add_argument("--provider", type=UUID, help="provider id (provider keys)")
    create.add_argument("--name", required=True, help="who or what the key is for")
    key_commands.add_parser("list", help="list keys (never their secrets)")
    revoke = key_commands.add_parser("revoke", help="revoke a key by id")
    revoke.add_argument("id", type=UUID)
    return parser


class SchemaMissing(Exception):
    pass


@asynccontextmanager
async def _pool(settings: Settings) -> AsyncIterator[Pool]:
    """One connection, for commands that work in several transactions (one per batch)."""
    pool = await create_pool(await resolve_dsn(settings), min_size=1, max_size=1)
    try:
        async with pool.acquire() as conn:
            if not await is_current(conn):
                raise SchemaMissing
        yield pool
    finally:
        await pool.close()


@asynccontextmanager
async def _database(settings: Settings, *, need_schema: bool = True) -> AsyncIterator[Connection]:
    pool = await create_pool(await resolve_dsn(settings), min_size=1, max_size=1)
    try:
        async with pool.acquire() as conn:
            if need_schema and not await is_current(conn):
                raise SchemaMissing
            yield conn
    finally:
        await pool.close()


async def cmd_migrate(args: argparse.Namespace, settings: Settings) -> int:
    async with _database(settings, need_schema=False) as conn:
        applied = await migrate(conn)
    print(f"applied {len(applied)} migration(s)" + (f": {applied}" if applied else ""))
    return 0


@asynccontextmanager
async def _units(settings: Settings) -> AsyncIterator[Units]:
    """How a command runs its use cases: as the service does (service/usecases/uow.py), on
    the system clock, each unit acting as CLI (its records say "cli")."""
    async with _pool(settings) as pool:
        yield Units(
            pool,
            SystemClock(),
            policy(settings),
            idempotency_ttl=timedelta(hours=settings.idempotency_ttl_hours),
        )


class PurgeProgress:
    """`pos purge` on a terminal: a status line on stderr, redrawn after each batch, with the
    bookings erased, the rate and what is left. Drawn then returned to (cursor at its start),
    so the log's line for the batch, written next, replaces it and it is drawn again below:
    the log scrolls and the status stays at the bottom."""

    def __init__(self, due: int, stream: TextIO) -> None:
        self.due = due
        self.stream = stream
        self.started = time.monotonic()

    def __call__(self, batch: Batch) -> None:
        elapsed = max(time.monotonic() - self.started, 1e-6)
        rate = batch.erased_so_far / elapsed
        left = max(self.due - batch.erased_so_far, 0)
        eta = f", about {left / rate:.0f} s to go" if rate > 0 and left else ""
        self.stream.write(
            f"\r\033[Kerased {batch.erased_so_far:,} of {self.due:,} booking(s), "
            f"{rate:,.0f}/s, {left:,} left{eta}\r"
        )
        self.stream.flush()

    def end(self) -> None:
        self.stream.write("\n")
        self.stream.flush()


async def cmd_purge(args: argparse.Namespace, settings: Settings) -> int:
    async with _units(settings) as units:
        progress = None
        if sys.stderr.isatty():
            due = UseCase(erasure.due, settings.personal_data_retention_days)
            progress = PurgeProgress(await units.read(CLI, due), sys.stderr)
        # Batches wait for another purge's batch (a replica's job) rather than skip: the
        # command ends with everything due erased.
        done = await erasure.erase(
            units,
            settings.personal_data_retention_days,
            origin=CLI,
            wait=True,
            batch_size=settings.erasure_batch_size,
            on_batch=progress,
        )
        assert done is not None  # waiting for the lock, a round always runs
        if progress is not None:
            progress.end()
        async with units.pool.acquire() as conn:
            left = await erasure.reclaim(conn, done)
    print(
        f"erased personal fields of {done.erased} booking(s); "
        f"removed {done.forgotten} stored answer(s)"
    )
    for table, why in left.items():
        print(f"pos purge: {table} was not vacuumed: {why}", file=sys.stderr)
    return 0


async def cmd_seed_demo(args: argparse.Namespace, settings: Settings) -> int:
    if settings.environment == "production":
        print("pos seed-demo: refused in production (the demo keys are public)", file=sys.stderr)
        return 2
    async with _database(settings) as conn:
        seeded = await seed_demo(conn)
        _print_demo_keys(await live_demo_keys(conn))
    print("demo data seeded" if seeded else "demo data already present")
    return 0


def _print_demo_keys(demo_keys: list[DemoKey]) -> None:
    if not demo_keys:
        return
    print("Demo API keys (development only, published in README.md):")
    for key in demo_keys:
        print(f"  {key.role:<9} {key.secret}")


def shown(text: object) -> str:
    """Text as a terminal may print it: anything not printable (escape sequences, backspace,
    bidirectional overrides) appears as its Python escape instead of acting on the screen."""
    return "".join(
        ch if ch.isprintable() else ch.encode("unicode_escape", "backslashreplace").decode()
        for ch in str(text)
    )


def _key_problem(args: argparse.Namespace) -> str | None:
    if refused_character(args.name) is not None or not args.name.strip():
        return "--name must be one line of printable text"
    if args.role == "officer" and not args.force:
        return "an officer key needs --force CODE"
    if args.role == "provider" and not args.provider:
        return "a provider key needs --provider ID"
    if args.role != "officer" and args.force:
        return "only officer keys take --force"
    if args.role != "provider" and args.provider:
        return "only provider keys take --provider"
    return None


async def _issue(tx: Tx, key: NewKey) -> IssuedKey:
    """`pos api-key create`: the key's force or provider must exist, then the key is made."""
    await check_scope_exists(tx, key)
    return await issue_key(tx, key)


async def _every_key(tx: ReadTx) -> list[asyncpg.Record]:
    """`pos api-key list`: every key, newest last."""
    return await api_keys.list_page(tx.conn, None, 100_000)


async def cmd_api_key(args: argparse.Namespace, settings: Settings) -> int:
    async with _units(settings) as units:
        if args.key_command == "create":
            problem = _key_problem(args)
            if problem:
                print(f"pos api-key create: {problem}", file=sys.stderr)
                return 2
            key = NewKey(
                name=args.name,
                role=Role(args.role),
                force_code=args.force,
                provider_id=args.provider,
            )
            try:
                issued = await units.write(CLI, UseCase(_issue, key))
            except ValidationProblem as refused:
                print(f"pos api-key create: {refused.detail}", file=sys.stderr)
                return 2
            created = issued.api_key
            # The key alone on stdout, so `KEY=$(pos api-key create ...)` is the key; the rest
            # is for the person at the terminal.
            print(
                f"created {created.role} key {created.id} ({shown(created.name)}); shown once, "
                "on stdout:",
                file=sys.stderr,
            )
            print(issued.secret, flush=True)
            return 0
        if args.key_command == "list":
            for row in await units.read(CLI, UseCase(_every_key)):
                scope = row["force"] or row["provider_id"] or "-"
                state = "revoked" if row["revoked_at"] else "active"
                print(
                    f"{row['id']}  {shown(row['prefix'])}...  {row['role']:<8}  {shown(scope)}  "
                    f"{state}  {shown(row['name'])}"
                )
            return 0
        try:
            revoked = await units.write(CLI, UseCase(revoke_key, args.id))
        except NotFound:
            print(f"pos api-key revoke: no API key has the id {args.id}", file=sys.stderr)
            return 1
        print(f"revoked {revoked.id} ({shown(revoked.name)})")
        return 0


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    async def prepare() -> str:
        dsn = await resolve_dsn(settings)
        pool = await create_pool(dsn, min_size=1, max_size=1)
        try:
            async with pool.acquire() as conn:
                if not args.no_migrate:
                    await migrate(conn)
                if settings.seed_demo and not args.no_seed:
                    await seed_demo(conn)
                    _print_demo_keys(await live_demo_keys(conn))
        finally:
            await pool.close()
        return dsn

    dsn = asyncio.run(prepare())
    app = create_app(settings, dsn=dsn)
    shutdown = app[keys.SHUTDOWN]
    shutdown.hard_exit = True
    # SIGTERM and SIGINT are a graceful stop: stop accepting, ask the jobs to stop after their
    # current batch, let in-flight requests finish (for their share of
    # SHUTDOWN_TIMEOUT_SECONDS), then run cleanup (jobs, pool) within the rest: see
    # service/stopping.py. Exits non-zero when something had to be cut.
    asyncio.run(
        serve(
            app,
            host=settings.host,
            port=settings.port,
            shutdown_timeout=settings.shutdown_timeout_seconds * stopping.REQUESTS_SHARE,
            # A connection that sends no request for this long is closed (also one that
            # connects and sends nothing): idle sockets must not pile up.
            keepalive_timeout=IDLE_CONNECTION_SECONDS,
            access_log=None,
            on_listening=_announce,
        )
    )
    return stopping.CUT_EXIT_CODE if shutdown.cut else 0


IDLE_CONNECTION_SECONDS = 30.0


def _announce(url: str) -> None:
    # On stdout, flushed, so a person (and a test, which reads the port from it) sees it now.
    print(f"Listening on {url} (API docs: {url}/docs); Ctrl-C or SIGTERM stops.", flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = load_settings()
    except ValidationError as exc:
        print("configuration error:", file=sys.stderr)
        for error in exc.errors(include_input=False, include_url=False):
            name = ".".join(str(part) for part in error["loc"]).upper() or "SETTINGS"
            print(f"  {name}: {error['msg'].removeprefix('Value error, ')}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level, settings.log_format)
    # Said plainly, on stderr: a command run with another DATA_DIR or DATABASE_URL than the
    # server's works on another database (issue 17).
    print(
        f"pos: database: {describe_database(settings.database_url, settings.data_dir)}",
        file=sys.stderr,
    )
    try:
        if args.command == "serve":
            return cmd_serve(args, settings)
        return _run_command(args, settings)
    except NestedDataDir as exc:
        print(f"pos: {exc}", file=sys.stderr)
        return 2


def _run_command(args: argparse.Namespace, settings: Settings) -> int:
    commands: dict[str, Command] = {
        "migrate": cmd_migrate,
        "api-key": cmd_api_key,
        "seed-demo": cmd_seed_demo,
        "purge": cmd_purge,
    }
    try:
        return asyncio.run(commands[args.command](args, settings))
    except SchemaMissing:
        where = describe_database(settings.database_url, settings.data_dir)
        print(
            f"the database schema is missing or behind in {where}: run `pos migrate` first"
            " (with the same DATA_DIR or DATABASE_URL as the server)",
            file=sys.stderr,
        )
        return 2
