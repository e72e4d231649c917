"""The service's own SQL for one request, replayed by pgbench.

Nothing here copies a query. One real request runs through the real application in this
process (aiohttp test server, the service's own pool) while every statement its connection
sends is recorded with its arguments. The recording becomes a pgbench script:

- arguments that came from the request (site, window, gender, point) become variables drawn
  per transaction from the bench_variant table, so pgbench asks the same mix the load does;
- "now" becomes now(); other instants become now() plus the same offset (a hold's expiry);
- an id that an earlier statement returned (the bed the hold chose) is taken from that
  statement's result with \\aset; a fresh uuid (the booking id) from gen_random_uuid();
- anything else is a constant, passed as a parameter exactly as the service passed it (NULL
  as NULLIF of an empty variable: pgbench cannot bind a NULL);
- every `$n` keeps the type the server inferred for the service's prepared statement, so the
  plans match (pgbench runs with -M prepared, as asyncpg does).

When the service's SQL is rewritten, the next bench run records the new statements.
"""

from __future__ import annotations

import contextlib
import re
import uuid
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import asyncpg
from aiohttp.test_utils import TestClient, TestServer

from service.app import create_app
from service.settings import Settings

PARAM = re.compile(r"\$(\d+)")
IDENT = re.compile(r"^[a-z_][a-z0-9_]*$")


@dataclass
class Statement:
    sql: str
    args: tuple[Any, ...]
    rows: list[asyncpg.Record] | None


@dataclass
class Recorder:
    on: bool = False
    statements: list[Statement] = field(default_factory=list)
    server_settings: dict[str, str] = field(default_factory=dict)

    def add(self, sql: str, args: Sequence[Any], rows: list[asyncpg.Record] | None) -> None:
        if self.on:
            self.statements.append(Statement(sql, tuple(args), rows))


RECORDER = Recorder()


class RecordingConnection(asyncpg.Connection):  # type: ignore[type-arg]
    """An asyncpg connection that notes every statement (public API only)."""

    # The overrides keep asyncpg's own signatures, `timeout` included.
    async def execute(
        self,
        query: str,
        *args: Any,
        timeout: float | None = None,  # noqa: ASYNC109
    ) -> str:
        result = await super().execute(query, *args, timeout=timeout)
        RECORDER.add(query, args, None)
        return result

    async def executemany(
        self,
        command: str,
        args: Any,
        *,
        timeout: float | None = None,  # noqa: ASYNC109
    ) -> None:
        rows = [tuple(a) for a in args]
        await super().executemany(command, rows, timeout=timeout)
        for row in rows:
            RECORDER.add(command, row, None)

    async def fetch(self, query: str, *args: Any, **kwargs: Any) -> list[Any]:
        rows = await super().fetch(query, *args, **kwargs)
        RECORDER.add(query, args, list(rows))
        return rows

    async def fetchrow(self, query: str, *args: Any, **kwargs: Any) -> Any:
        row = await super().fetchrow(query, *args, **kwargs)
        RECORDER.add(query, args, [] if row is None else [row])
        return row

    async def fetchval(
        self,
        query: str,
        *args: Any,
        column: int = 0,
        timeout: float | None = None,  # noqa: ASYNC109
    ) -> Any:
        row = await super().fetchrow(query, *args, timeout=timeout)
        RECORDER.add(query, args, [] if row is None else [row])
        return None if row is None else row[column]


@contextlib.contextmanager
def recording_pools() -> Iterator[None]:
    """Pools the service creates meanwhile use RecordingConnection; their settings are kept."""
    original = asyncpg.create_pool

    def create_pool(*args: Any, **kwargs: Any) -> Any:
        RECORDER.server_settings.update(kwargs.get("server_settings") or {})
        kwargs["connection_class"] = RecordingConnection
        return original(*args, **kwargs)

    asyncpg.create_pool = create_pool  # type: ignore[assignment]
    try:
        yield
    finally:
        asyncpg.create_pool = original


class FixedClock:
    """The service's clock, held still so "now" can be told apart from the request's times."""

    def __init__(self) -> None:
        self.at = datetime.now().astimezone()

    def now(self) -> datetime:
        return self.at


@dataclass(frozen=True)
class Call:
    method: str
    path: str
    key: str
    body: Mapping[str, Any] | None
    inputs: Sequence[tuple[Any, str]]  # (value in the request, bench_variant column)
    expect: int


@contextlib.asynccontextmanager
async def in_process(settings: Settings, dsn: str) -> AsyncIterator[tuple[TestClient, FixedClock]]:
    clock = FixedClock()
    with recording_pools():
        app = create_app(settings, clock=clock, dsn=dsn, run_jobs=False)
        client = TestClient(TestServer(app))
        await client.start_server()
        try:
            yield client, clock
        finally:
            await client.close()


async def record(
    client: TestClient, clock: FixedClock, call: Call
) -> tuple[list[Statement], datetime]:
    """Run `call` once, recording what its connection sends (asyncpg's type introspection
    goes through internal calls, so it is not in the recording)."""
    for _ in (1,):
        clock.at = datetime.now().astimezone()
        RECORDER.statements = []
        RECORDER.on = True
        try:
            response = await client.request(
                call.method,
                call.path,
                json=call.body,
                headers={"Authorization": f"Bearer {call.key}"},
            )
            text = await response.text()
        finally:
            RECORDER.on = False
        if response.status != call.expect:
            raise RuntimeError(
                f"recording {call.method} {call.path}: expected {call.expect}, "
                f"got {response.status}: {text[:300]}"
            )
    return list(RECORDER.statements), clock.at


@dataclass
class Script:
    text: str
    defines: dict[str, str]
    statements: list[str]  # first line of each replayed statement, for the report
    skipped: list[str]  # statements recorded but not replayed


def _pg_text(value: Any) -> str:
    """A value as PostgreSQL reads it in text form (what pgbench sends)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, bytes):
        return "\\x" + value.hex()
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, list | tuple):
        inner = ",".join(
            "NULL"
            if v is None
            else '"' + _pg_text(v).replace("\\", "\\\\").replace('"', '\\"') + '"'
            for v in value
        )
        return "{" + inner + "}"
    return str(value)


def _kind(value: Any) -> type:
    # asyncpg's UUID subclasses uuid.UUID; bool subclasses int but 0 is not False here.
    for kind in (bool, uuid.UUID, datetime):
        if isinstance(value, kind):
            return kind
    return type(value)


def _same(a: Any, b: Any) -> bool:
    return _kind(a) is _kind(b) and a == b


async def param_types(conn: asyncpg.Connection, sql: str) -> list[str]:
    """The type the server infers for each $n of `sql`, as SQL spells it."""
    prepared = await conn.prepare(sql)
    oids = [t.oid for t in prepared.get_parameters()]
    return [await conn.fetchval("SELECT format_type($1, NULL)", oid) for oid in oids]


async def to_script(
    conn: asyncpg.Connection,
    statements: list[Statement],
    at: datetime,
    inputs: Sequence[tuple[Any, str]],
    variant_from: str,
) -> Script:
    """Turn a recording into a pgbench script (see the module docstring)."""
    setup: list[str] = ["now()::text AS at_now"]
    defines: dict[str, str] = {}
    fresh: dict[Any, str] = {}
    constants: list[tuple[Any, str]] = []
    aset: dict[int, str] = {}
    lines: list[str] = []

    def result_var(k_max: int, value: Any) -> str | None:
        # Only ids: a 0 or a false that a row also holds is a constant, not that row's value.
        if not isinstance(value, uuid.UUID):
            return None
        for k in range(k_max - 1, -1, -1):
            rows = statements[k].rows
            for row in rows or []:
                for column in row.keys():  # noqa: SIM118 (Record is not a dict)
                    if IDENT.match(column) and _same(row[column], value):
                        aset[k] = f"r{k}_"
                        return f"r{k}_{column}"
        return None

    def variable(index: int, value: Any) -> str | None:
        for known, column in inputs:
            if _same(value, known):
                return f"in_{column}"
        if isinstance(value, datetime) and value == at:
            return "at_now"
        found = result_var(index, value)
        if found:
            return found
        if isinstance(value, uuid.UUID):
            if value not in fresh:
                fresh[value] = f"u{len(fresh)}"
                setup.append(f"gen_random_uuid()::text AS {fresh[value]}")
            return fresh[value]
        if isinstance(value, datetime):
            if value not in fresh:
                fresh[value] = f"t{len(fresh)}"
                seconds = (value - at).total_seconds()
                setup.append(f"(now() + {seconds!r} * interval '1 second')::text AS {fresh[value]}")
            return fresh[value]
        for known, name in constants:
            if _same(known, value):
                return name
        name = f"c{len(constants)}"
        constants.append((value, name))
        defines[name] = _pg_text(value)
        return name

    skipped: list[str] = []
    kept: list[Statement] = []
    for statement in statements:
        sql = statement.sql.strip().rstrip(";").strip()
        if ";" in sql:
            # asyncpg's reset on returning a connection to the pool (several statements in
            # one, no arguments): driver housekeeping, not the request's SQL, and pgbench's
            # prepared mode cannot send it. Reported as left out.
            if statement.args:
                raise RuntimeError(f"cannot replay a statement holding ';': {sql[:80]}")
            skipped.append(" ".join(sql.split()))
            continue
        kept.append(Statement(sql, statement.args, statement.rows))
    statements = kept
    for index, statement in enumerate(statements):
        sql = statement.sql
        types = await param_types(conn, sql) if statement.args else []
        replacements: list[str] = []
        for value, type_name in zip(statement.args, types, strict=True):
            if value is None:
                # pgbench cannot bind NULL; NULLIF of an empty variable is a parameter the
                # planner cannot see through either, so generic plans keep the service's shape.
                if "''::text AS nul" not in setup:
                    setup.append("''::text AS nul")
                replacements.append(f"NULLIF(:nul, '')::{type_name}")
            elif isinstance(value, list) and len(value) == 1 and type_name.endswith("[]"):
                element = variable(index, value[0])
                replacements.append(f"ARRAY[:{element}::{type_name[:-2]}]::{type_name}")
            else:
                replacements.append(f":{variable(index, value)}::{type_name}")
        lines.append(PARAM.sub(lambda m, r=replacements: r[int(m.group(1)) - 1], sql))

    body = [line + (f" \\aset {aset[i]}" if i in aset else ";") for i, line in enumerate(lines)]
    setup += [f"v.{column}::text AS in_{column}" for _, column in inputs]
    header = f"SELECT {', '.join(setup)}\n{variant_from} \\gset"
    return Script(
        text="\n".join([header, *body]) + "\n",
        defines=defines,
        statements=[s.sql.strip().splitlines()[0][:100] for s in statements],
        skipped=skipped,
    )
