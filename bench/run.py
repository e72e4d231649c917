"""`make bench`: seed (or reuse) the national data set at two sizes, run the service against it,
load it, replay its SQL with pgbench, and report against the targets of SPEC.md section 10."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import platform
import random
import resource
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode
from uuid import UUID

import aiohttp
import annotated_types
import asyncpg

from bench import backlog, dataset, delivery, herd, load, replay
from bench.dataset import TOWNS, Size
from service.db import ensure_database, hide_password, start_embedded_server, with_database
from service.demo import FORCES
from service.log import configure_logging
from service.migrate import migrate
from service.settings import Settings, load_settings
from service.usecases import tx
from service.usecases.api_keys import NewKey, issue_key
from service.vocab import Role

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
SERVICE_APP = "places-of-safety"
OFFICER_FORCES = [code for code, _ in FORCES][::4][:10]  # ten forces share the hold load


@dataclass(frozen=True)
class Plan:
    quick: bool
    small: Size
    large: Size
    throughput_seconds: float
    rate_seconds: float
    connections: int
    hold_windows_per_site: int
    search_variants: int

    @classmethod
    def from_env(cls) -> Plan:
        quick = os.environ.get("BENCH_QUICK", "") not in ("", "0")
        if quick:
            return cls(
                quick=True,
                small=Size("quick_small", 100, 1_000),
                large=Size("quick_large", 100, 20_000),
                throughput_seconds=3,
                rate_seconds=3,
                connections=4,
                hold_windows_per_site=20,
                search_variants=50,
            )
        return cls(
            quick=False,
            small=Size("10k", 1_000, 10_000),
            large=Size("1m", 1_000, 1_000_000),
            throughput_seconds=15,
            rate_seconds=20,
            connections=8,
            hold_windows_per_site=10,
            search_variants=200,
        )


def say(message: str) -> None:
    print(f"[{datetime.now(UTC).strftime('%H:%M:%S')}] {message}", flush=True)


def service_overrides() -> dict[str, Any]:
    """Settings for the service under test: quiet logs, short holds (the ledger does not fill
    up), and every per-key or per-force limit that exists opened as wide as it validates, so
    the bench measures the work rather than the limiter."""
    overrides: dict[str, Any] = {
        "seed_demo": False,
        "log_level": "warning",
        "hold_ttl_seconds": 60,
        # The event-delivery phase's webhook receiver listens on 127.0.0.1.
        "webhook_allow_private": True,
    }
    # And stays as far ahead as it allows: the hold variants are 2-80 days ahead.
    limits = ("hold_cap_", "booking_cap_", "rate_limit_", "disclosure_budget_", "max_lead_hours")
    for name, info in Settings.model_fields.items():
        if name.startswith(limits):
            upper = [m.le for m in info.metadata if isinstance(m, annotated_types.Le)]
            overrides[name] = upper[0] if upper else 1_000_000
    return overrides


# --- database ------------------------------------------------------------------------------


async def prepare_database(server_dsn: str, size: Size) -> str:
    """The size's database, migrated with the service's code, seeded once, reused after."""
    await ensure_database(server_dsn, size.database)
    dsn = with_database(server_dsn, size.database)
    conn = await asyncpg.connect(dsn)
    try:
        seeded = await dataset.seeded_as(conn)
        # A seed cut short (an error, Ctrl-C) leaves rows but no fingerprint: start again.
        partial = (
            seeded is None
            and await conn.fetchval("SELECT to_regclass('provider') IS NOT NULL")
            and await conn.fetchval("SELECT EXISTS (SELECT 1 FROM provider)")
        )
        if partial or (seeded is not None and seeded != dataset.fingerprint(size)):
            why = "an unfinished seed" if partial else "another generator version"
            say(f"{size.database}: seeded by {why}; rebuilding")
            await conn.close()
            admin = await asyncpg.connect(server_dsn)
            try:
                quoted = await admin.fetchval("SELECT quote_ident($1)", size.database)
                await admin.execute(f"DROP DATABASE {quoted} WITH (FORCE)")
            finally:
                await admin.close()
            await ensure_database(server_dsn, size.database)
            conn = await asyncpg.connect(dsn)
            seeded = await dataset.seeded_as(conn)
        applied = await migrate(conn)
        if applied:
            say(f"{size.database}: applied migrations {applied}")
        if seeded is None:
            say(f"{size.database}: seeding {size.sites:,} sites, {size.allocations:,} allocations")
            await dataset.seed(conn, size, say)
        else:
            say(f"{size.database}: reusing the seeded data set")
            await dataset.refresh_current(conn)
        if applied:
            await conn.execute("ANALYZE")
    finally:
        await conn.close()
    return dsn


VARIANTS = """
DROP TABLE IF EXISTS bench_variant;
CREATE TABLE bench_variant (
    kind     text NOT NULL,
    client   integer NOT NULL,
    k        integer NOT NULL,
    key_no   integer NOT NULL,
    site_id  uuid,
    gender   text NOT NULL,
    near_lat double precision,
    near_lon double precision,
    start_at timestamptz NOT NULL,
    end_at   timestamptz NOT NULL,
    PRIMARY KEY (kind, client, k)
);
"""

VARIANT_COLUMNS = [
    "kind",
    "client",
    "k",
    "key_no",
    "site_id",
    "gender",
    "near_lat",
    "near_lon",
    "start_at",
    "end_at",
]

ACTIVE_SITES = """
SELECT id, genders_accepted FROM site WHERE status = 'active' ORDER BY name
"""


async def make_variants(
    conn: asyncpg.Connection, plan: Plan, keys: list[str]
) -> tuple[list[load.Request], list[load.Request]]:
    """The request mix both load generators draw from, in bench_variant (pgbench reads it there).

    Searches: near a town, mostly women, 24-72 h from about now. Holds: every active site, a
    gender it accepts, 1-3 day windows 2-80 days ahead. Hold variants are dealt to pgbench
    clients by site, so two pgbench clients never race for one site's beds (pgbench cannot
    catch the exclusion violation the service retries on).
    """
    rng = random.Random(42)
    await conn.execute(VARIANTS)
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    rows: list[tuple[Any, ...]] = []
    for k in range(1, plan.search_variants + 1):
        _, lat, lon = rng.choice(TOWNS)
        start = now + timedelta(minutes=20 + rng.randrange(180))
        rows.append(
            (
                "search",
                0,
                k,
                rng.randrange(len(keys)),
                None,
                rng.choice(["female"] * 5 + ["male"] * 3 + ["non_binary"]),
                round(lat + rng.uniform(-0.05, 0.05), 4),
                round(lon + rng.uniform(-0.05, 0.05), 4),
                start,
                start + timedelta(hours=rng.choice([24, 24, 48, 72])),
            )
        )
    sites = await conn.fetch(ACTIVE_SITES)
    per_client: dict[int, int] = {}
    for ordinal, site in enumerate(sites):
        client = ordinal % plan.connections
        for _ in range(plan.hold_windows_per_site):
            per_client[client] = per_client.get(client, 0) + 1
            start = now.replace(minute=0) + timedelta(hours=48 + rng.randrange(78 * 24))
            rows.append(
                (
                    "hold",
                    client,
                    per_client[client],
                    rng.randrange(len(keys)),
                    site["id"],
                    rng.choice(site["genders_accepted"]),
                    None,
                    None,
                    start,
                    start + timedelta(hours=rng.choice([24, 48, 72])),
                )
            )
    await conn.copy_records_to_table(
        "bench_variant",
        records=rows,
        columns=VARIANT_COLUMNS,
    )
    await conn.execute("ANALYZE bench_variant")
    searches = [_search_request(r, keys) for r in rows if r[0] == "search"]
    holds = [_hold_request(r, keys) for r in rows if r[0] == "hold"]
    return searches, holds


def _search_request(row: tuple[Any, ...], keys: list[str]) -> load.Request:
    query = urlencode(
        {
            "start": row[8].isoformat(),
            "end": row[9].isoformat(),
            "gender": row[5],
            "near_lat": repr(row[6]),
            "near_lon": repr(row[7]),
        }
    )
    return load.Request("GET", f"/v1/availability?{query}", keys[row[3]], None)


def _hold_request(row: tuple[Any, ...], keys: list[str]) -> load.Request:
    body = {
        "site_id": str(row[4]),
        "start": row[8].isoformat(),
        "end": row[9].isoformat(),
        "needs": {"gender": row[5], "dependants": 0, "wheelchair": False},
        "person_ref": f"BENCH-{row[2]}",
        "custody_suite": "Bench custody suite",
        "officer_collar": "PC 1234",
    }
    return load.Request("POST", "/v1/bookings", keys[row[3]], json.dumps(body))


async def issue_keys(conn: asyncpg.Connection) -> tuple[list[UUID], list[str]]:
    """Officer keys for this run, made by the service's own code, one per force."""
    ids, secrets = [], []
    for code in OFFICER_FORCES:
        key = NewKey(name=f"bench {code}", role=Role.OFFICER, force_code=code)
        async with tx.writing(conn, at=datetime.now(UTC), who=None, on_behalf="cli") as unit:
            issued = await issue_key(unit, key)
        ids.append(issued.api_key.id)
        secrets.append(issued.secret)
    return ids, secrets


CLEANUP = [
    """DELETE FROM event WHERE booking_id IN (SELECT id FROM booking WHERE created_by = ANY($1))""",
    """DELETE FROM booking_transition
       WHERE booking_id IN (SELECT id FROM booking WHERE created_by = ANY($1))""",
    """WITH gone AS (DELETE FROM booking WHERE created_by = ANY($1) RETURNING id)
       DELETE FROM allocation WHERE id IN (SELECT id FROM gone)""",
]
# A hold also announces its site's availability (an event with no booking): the run's own, by
# time (the data set is seeded without events), so the feed does not grow run by run.
CLEANUP_ANNOUNCED = """
DELETE FROM event
WHERE booking_id IS NULL AND type = 'site.availability_changed' AND occurred_at >= $1
"""
# When a later migration makes bookings undeletable (an append-only audit, say), free the beds.
CLEANUP_FALLBACK = """
UPDATE allocation SET status = 'cancelled', ended_at = now()
WHERE status IN ('held', 'pending', 'confirmed', 'arrived')
  AND id IN (SELECT id FROM booking WHERE created_by = ANY($1))
"""


async def cleanup(conn: asyncpg.Connection, key_ids: list[UUID], since: datetime) -> None:
    """Take out what the run booked since `since`, so the ledger is the seeded one for the next
    phase."""
    try:
        async with conn.transaction():
            for sql in CLEANUP:
                await conn.execute(sql, key_ids)
            await conn.execute(CLEANUP_ANNOUNCED, since)
    except asyncpg.PostgresError as exc:
        say(f"cleanup could not delete the run's bookings ({type(exc).__name__}); cancelling")
        await conn.execute(CLEANUP_FALLBACK, key_ids)
    with contextlib.suppress(asyncpg.PostgresError):
        await conn.execute("DELETE FROM search WHERE api_key_id = ANY($1)", key_ids)
    await conn.execute("VACUUM (ANALYZE) allocation, booking")


async def drain(conn: asyncpg.Connection, deadline_s: float = 60) -> float:
    """Wait until the service has no statement running (an overloaded phase leaves a queue).

    Past the deadline the service's remaining statements are cancelled, so one phase of a slow
    build cannot eat the next phase's time (their clients gave up long ago).
    """
    started = time.monotonic()
    quiet = 0
    cancelled_total = 0
    while True:
        if time.monotonic() - started > deadline_s:
            # Again on every poll: the service's queued requests start new statements.
            cancelled = await conn.fetchval(
                "SELECT count(*) FILTER (WHERE pg_cancel_backend(pid)) FROM pg_stat_activity "
                "WHERE application_name = ANY($1) AND state = 'active' "
                "AND pid <> pg_backend_pid()",
                [SERVICE_APP, load.PGBENCH_APP],
            )
            if cancelled and not cancelled_total:
                say(f"  drain: still busy after {deadline_s:g} s; cancelling the service's queue")
            cancelled_total += cancelled
        busy = await conn.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = ANY($1) "
            "AND state = 'active' AND pid <> pg_backend_pid()",
            [SERVICE_APP, load.PGBENCH_APP],
        )
        if time.monotonic() - started > 300:
            break
        quiet = quiet + 1 if busy == 0 else 0
        if quiet >= 3:
            break
        await asyncio.sleep(0.5)
    return round(time.monotonic() - started, 1)


# --- the service ---------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextlib.asynccontextmanager
async def running_service(dsn: str, log_path: Path) -> AsyncIterator[tuple[str, int]]:
    """`pos serve --no-seed` as its own process on loopback; SIGTERM at the end."""
    port = free_port()
    env = {**os.environ, "DATABASE_URL": dsn, "HOST": "127.0.0.1", "PORT": str(port)}
    env.update({k.upper(): str(v).lower() for k, v in service_overrides().items()})
    log = log_path.open("ab")
    process = subprocess.Popen(  # noqa: ASYNC220 (starts at once; the service under test)
        [sys.executable, "-m", "service", "serve", "--no-seed"],
        env=env,
        stdout=log,
        stderr=log,
        cwd=ROOT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        async with aiohttp.ClientSession() as session:
            while True:
                if process.poll() is not None:
                    raise RuntimeError(f"the service exited ({process.returncode}); see {log_path}")
                with contextlib.suppress(aiohttp.ClientError):
                    async with session.get(base + "/readyz") as response:
                        if response.status == 200:
                            break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the service was not ready in 90 s; see {log_path}")
                await asyncio.sleep(0.2)
        yield base, process.pid
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                await asyncio.to_thread(process.wait, 60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        log.close()


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    raise RuntimeError("no VmRSS")


def child_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def self_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


# --- phases --------------------------------------------------------------------------------


@dataclass
class Session:
    plan: Plan
    size: Size
    dsn: str
    conn: asyncpg.Connection
    key_ids: list[UUID]
    keys: list[str]
    searches: list[load.Request]
    holds: list[load.Request]
    work: Path
    started: datetime


@contextlib.asynccontextmanager
async def session(plan: Plan, size: Size, dsn: str, work: Path) -> AsyncIterator[Session]:
    conn = await asyncpg.connect(dsn)
    started = await conn.fetchval("SELECT now()")
    key_ids, keys = await issue_keys(conn)
    try:
        searches, holds = await make_variants(conn, plan, keys)
        yield Session(plan, size, dsn, conn, key_ids, keys, searches, holds, work, started)
    finally:
        await cleanup(conn, key_ids, started)
        await conn.execute("UPDATE api_key SET revoked_at = now() WHERE id = ANY($1)", key_ids)
        await conn.execute("DROP TABLE IF EXISTS bench_variant")
        await conn.close()


async def record_scripts(s: Session) -> dict[str, Any]:
    """pgbench scripts for one search and one hold, from the statements the service ran."""
    settings = load_settings(database_url=s.dsn, **service_overrides())
    search_row = await s.conn.fetchrow(
        "SELECT * FROM bench_variant WHERE kind = 'search' ORDER BY k LIMIT 1"
    )
    hold_row = await s.conn.fetchrow(
        "SELECT * FROM bench_variant WHERE kind = 'hold' AND client = 0 ORDER BY k LIMIT 1"
    )
    assert search_row is not None
    assert hold_row is not None
    search_row_t = tuple(search_row[c] for c in VARIANT_COLUMNS)
    search_req = _search_request(search_row_t, s.keys)
    hold_row_t = tuple(hold_row[c] for c in VARIANT_COLUMNS)
    hold_req = _hold_request(hold_row_t, s.keys)
    calls = {
        "search": (
            replay.Call(
                "GET",
                search_req.path,
                search_req.key,
                None,
                [
                    (search_row["start_at"], "start_at"),
                    (search_row["end_at"], "end_at"),
                    (search_row["gender"], "gender"),
                    (search_row["near_lat"], "near_lat"),
                    (search_row["near_lon"], "near_lon"),
                ],
                200,
            ),
            "\\set k random(1, :variants)\n",
            "FROM bench_variant v WHERE v.kind = 'search' AND v.client = 0 AND v.k = :k",
            {"variants": str(s.plan.search_variants)},
        ),
        "hold": (
            replay.Call(
                "POST",
                hold_req.path,
                hold_req.key,
                json.loads(hold_req.body or "{}"),
                [
                    (hold_row["site_id"], "site_id"),
                    (hold_row["start_at"], "start_at"),
                    (hold_row["end_at"], "end_at"),
                    (hold_row["gender"], "gender"),
                ],
                201,
            ),
            "\\set k random(1, :per_client)\n",
            "FROM bench_variant v WHERE v.kind = 'hold' AND v.client = :client_id AND v.k = :k",
            {
                "per_client": str(
                    await s.conn.fetchval(
                        "SELECT min(n) FROM (SELECT count(*) AS n FROM bench_variant "
                        "WHERE kind = 'hold' GROUP BY client) c"
                    )
                )
            },
        ),
    }
    scripts: dict[str, Any] = {}
    async with replay.in_process(settings, s.dsn) as (client, clock):
        for name, (call, prelude, variant_from, extra) in calls.items():
            statements, at = await replay.record(client, clock, call)
            script = await replay.to_script(s.conn, statements, at, call.inputs, variant_from)
            path = s.work / f"{name}.pgbench.sql"
            path.write_text(prelude + script.text, encoding="utf-8")
            scripts[name] = {
                "path": path,
                "defines": {**script.defines, **extra},
                "statements": script.statements,
                "skipped": script.skipped,
            }
    scripts["options"] = {
        k: v for k, v in replay.RECORDER.server_settings.items() if k != "application_name"
    }
    return scripts


async def throughput(
    s: Session, base: str, wrk: str, pgbench: str, scripts: dict[str, Any]
) -> dict[str, Any]:
    """Service vs pgbench, back to back, same clients and duration; search, then hold."""
    out: dict[str, Any] = {}
    for name, requests in (("search", s.searches), ("hold", s.holds)):
        data = s.work / f"{name}.lua-data"
        load.write_lua_data(data, requests)
        say(f"{s.size.name}: {name} throughput, service (wrk, {s.plan.connections} connections)")
        cpu = child_cpu()
        service = await asyncio.to_thread(
            load.run_wrk,
            wrk,
            base,
            data,
            connections=s.plan.connections,
            seconds=s.plan.throughput_seconds,
        )
        service["generator_cpu_s"] = round(child_cpu() - cpu, 2)
        service["drained_s"] = await drain(s.conn)
        await cleanup(s.conn, s.key_ids, s.started)
        say(f"{s.size.name}: {name} throughput, pgbench ({s.plan.connections} clients)")
        script = scripts[name]
        database = await asyncio.to_thread(
            load.run_pgbench,
            pgbench,
            s.dsn,
            script["path"],
            script["defines"],
            clients=s.plan.connections,
            seconds=s.plan.throughput_seconds,
            options=scripts["options"],
        )
        await cleanup(s.conn, s.key_ids, s.started)
        if database.get("unfinished"):
            say("  pgbench did not finish within a minute of its time; cancelling its queries")
            database["drained_s"] = await drain(s.conn, deadline_s=0)
        ceiling = database["tps"]
        done = service["ok_rps"]
        out[name] = {
            "service": service,
            "pgbench": database,
            "ratio": round(done / ceiling, 3) if ceiling else None,
            "replayed_statements": script["statements"],
            "not_replayed": script["skipped"],
        }
    return out


async def serial(s: Session, base: str, wrk: str) -> dict[str, Any]:
    """One client, one search after another: what a single search costs on this ledger, with
    no queue in front of it (the history-growth comparison)."""
    data = s.work / f"search-{s.size.name}.lua-data"
    load.write_lua_data(data, s.searches)
    say(f"{s.size.name}: search latency, one client for {s.plan.rate_seconds / 2:g} s")
    result = await asyncio.to_thread(
        load.run_wrk, wrk, base, data, connections=1, seconds=s.plan.rate_seconds / 2
    )
    result["drained_s"] = await drain(s.conn)
    return result


async def fixed_rate(
    s: Session, base: str, name: str, requests: list[load.Request], rate: float, expect: int
) -> dict[str, Any]:
    say(f"{s.size.name}: {name} latency at {rate:g} req/s for {s.plan.rate_seconds:g} s")
    cpu = self_cpu()
    result = await load.open_loop(
        base, requests, rate=rate, seconds=s.plan.rate_seconds, expect=expect
    )
    result["generator_cpu_s"] = round(self_cpu() - cpu, 2)
    result["drained_s"] = await drain(s.conn)
    await cleanup(s.conn, s.key_ids, s.started)
    return result


EVENT_RATE = 10  # holds a second in the event-delivery phase


async def event_delivery(s: Session, base: str) -> dict[str, Any]:
    """Holds at a steady 10/s (200 in the full run), each one's `booking.held` timed to a feed
    reader and a webhook receiver on loopback (bench/delivery.py), as an admin sees them all."""
    count = round(EVENT_RATE * s.plan.rate_seconds)
    say(f"{s.size.name}: event delivery, {count} holds at {EVENT_RATE}/s, feed and webhook")
    async with tx.writing(s.conn, at=datetime.now(UTC), who=None, on_behalf="cli") as unit:
        issued = await issue_key(unit, NewKey(name="bench events", role=Role.ADMIN))
    try:
        result = await delivery.measure(base, issued.secret, s.holds, rate=EVENT_RATE, count=count)
    finally:
        await s.conn.execute(
            "UPDATE api_key SET revoked_at = now() WHERE id = $1", issued.api_key.id
        )
    # The subscription is deleted through the API; its rows go too, when nothing forbids it.
    with contextlib.suppress(asyncpg.PostgresError):
        async with s.conn.transaction():
            webhook_id = UUID(result["webhook_id"])
            await s.conn.execute("DELETE FROM webhook_delivery WHERE webhook_id = $1", webhook_id)
            await s.conn.execute("DELETE FROM webhook WHERE id = $1", webhook_id)
    result["drained_s"] = await drain(s.conn)
    await cleanup(s.conn, s.key_ids, s.started)
    return result


async def cold_start(plan: Plan, server_dsn: str, work: Path) -> dict[str, Any]:
    """A fresh service on a copy of the large data set with an erasure backlog (issue 15,
    bench/backlog.py): peak memory, longest transaction, event latency and time to drain."""
    retention: int = Settings.model_fields["personal_data_retention_days"].default
    copy = f"{plan.large.database}_backlog"
    say(f"{plan.large.name}: cold start on an erasure backlog (a copy: {copy})")
    loadavg_before = list(os.getloadavg())
    dsn, due = await backlog.copy_with_backlog(
        server_dsn, plan.large.database, copy, retention, say
    )
    try:
        conn = await asyncpg.connect(dsn)
        try:
            _, keys = await issue_keys(conn)  # dropped with the copy
            _, holds = await make_variants(conn, plan, keys)

            async def admin_key() -> str:
                at = datetime.now(UTC)
                async with tx.writing(conn, at=at, who=None, on_behalf="cli") as unit:
                    issued = await issue_key(unit, NewKey(name="bench backlog", role=Role.ADMIN))
                return issued.secret

            say(f"  {due:,} bookings due; starting the service, holds at {backlog.HOLD_RATE:g}/s")
            result = await backlog.run_cold_start(
                lambda: running_service(dsn, work / "service-backlog.log"),
                admin_key,
                dsn,
                copy,
                SERVICE_APP,
                holds,
                retention,
                say,
            )
        finally:
            await conn.close()
    finally:
        await backlog.drop(server_dsn, copy)
    return {
        "backlog": due,
        **result,
        "loadavg_before": loadavg_before,
        "loadavg_after": list(os.getloadavg()),
    }


PARKED_POLLS = 1_000
POLLS_PER_KEY = 5  # LONG_POLLS_PER_KEY's default: the bench parks them within the limit
WRITE_EVERY_S = 2.0


async def parked_polls(s: Session, base: str) -> dict[str, Any]:
    """Search p99 at 100 req/s alone, then with 1,000 long polls parked and a hold every 2 s
    (bench/herd.py). The polls are five on each of 200 officer keys, spread over every force
    (a force system follows its own force's booking events); the holds come from one of them.
    At least 10 s each, so a p99 rests on 1,000 searches."""
    seconds = max(s.plan.rate_seconds, 10)
    say(
        f"{s.size.name}: search latency at 100 req/s for {seconds:g} s, alone and beside"
        f" {PARKED_POLLS:,} parked long polls with a hold every {WRITE_EVERY_S:g} s"
    )
    writer_force = OFFICER_FORCES[0]
    codes = [code for code, _ in FORCES]
    # Round-robin from the writer's force, so it has its share of the keys.
    codes = codes[codes.index(writer_force) :] + codes[: codes.index(writer_force)]
    key_ids, poll_keys, in_scope = [], [], 0
    for n in range(PARKED_POLLS // POLLS_PER_KEY):
        code = codes[n % len(codes)]
        key = NewKey(name=f"bench poll {code} {n}", role=Role.OFFICER, force_code=code)
        async with tx.writing(s.conn, at=datetime.now(UTC), who=None, on_behalf="cli") as unit:
            issued = await issue_key(unit, key)
        key_ids.append(issued.api_key.id)
        poll_keys.append(issued.secret)
        in_scope += POLLS_PER_KEY if code == writer_force else 0
    writes = [r for r in s.holds if r.key == s.keys[0]]
    try:
        result = await herd.measure(
            base,
            s.searches,
            poll_keys,
            writes,
            polls=PARKED_POLLS,
            rate=100,
            seconds=seconds,
            write_every=WRITE_EVERY_S,
        )
    finally:
        await s.conn.execute("UPDATE api_key SET revoked_at = now() WHERE id = ANY($1)", key_ids)
    result["polls_in_the_writers_scope"] = in_scope
    result["drained_s"] = await drain(s.conn)
    await cleanup(s.conn, s.key_ids, s.started)
    return result


# --- report --------------------------------------------------------------------------------


def _fmt(value: float | None, unit: str = "") -> str:
    if value is None:
        return "n/a"
    return f"{value:,.2f}{unit}" if abs(value) < 100 else f"{value:,.0f}{unit}"


def targets(report: dict[str, Any]) -> list[dict[str, Any]]:
    large = report["large"]
    rows: list[dict[str, Any]] = []

    def add(name: str, measured: float | None, shown: str, target: str, ok: bool | None) -> None:
        rows.append(
            {"target": name, "measured": measured, "shown": shown, "goal": target, "pass": ok}
        )

    if "throughput" in large:
        _load_targets(report, add)
    if "cold_start" in large:
        _cold_start_targets(large["cold_start"], add)
    _herd_target(large, add)
    return rows


def _cold_start_targets(cold: dict[str, Any], add: Callable[..., None]) -> None:
    peak = cold["peak_rss_mb"]
    add(
        f"cold start, {cold['backlog']:,} erasures due: peak memory",
        peak,
        f"{_fmt(peak, ' MB')} (VmHWM)",
        "<= 150 MB",
        peak <= 150,
    )
    longest = cold["longest_writing_transaction_s"]
    add(
        "cold start: longest writing transaction",
        longest,
        f"{_fmt(longest, ' s')} (VACUUM after: {_fmt(cold['longest_vacuum_s'], ' s')}, no xid)",
        "<= 2 s",
        longest <= 2,
    )
    e = cold["feed"]
    p99 = e["p99_ms"]
    if e["events"]:
        shown = (
            f"p50 {_fmt(e['p50_ms'], ' ms')}, p99 {_fmt(p99, ' ms')}"
            if p99 is not None
            else f"p99 unbounded: {e['missing']} of {e['events']} events never arrived"
        )
        verdict: bool | None = p99 is not None and p99 <= 1000
    else:  # the quick run's backlog may be gone before the service is ready
        shown, verdict = f"no hold answered during the drain ({cold['statuses']})", None
    add(
        f"cold start: hold -> long-poll reader during the drain ({e['events']} holds)",
        p99,
        shown,
        "p99 <= 1 s",
        verdict,
    )
    drained = cold["drained_s"]
    add(
        "cold start: time to drain (from process start)",
        drained,
        f"{_fmt(drained, ' s')} ({cold['backlog'] / drained:,.0f} erasures/s)"
        if drained
        else "did not drain",
        "drains",
        drained is not None,
    )


def _load_targets(
    report: dict[str, Any], add: Callable[[str, float | None, str, str, bool | None], None]
) -> None:
    """The rows of the load phases (issue 7, 9, 14)."""
    large, small = report["large"], report["small"]

    for name, goal in (("search", 0.5), ("hold", 0.6)):
        t = large["throughput"][name]
        ratio = t["ratio"]
        add(
            f"{name} throughput vs pgbench",
            ratio,
            f"{_fmt(t['service']['ok_rps'])} / {_fmt(t['pgbench']['tps'])} /s = {_fmt(ratio)}",
            f">= {goal} x",
            ratio is not None and ratio >= goal,
        )
    for name, rate, goal in (("search", 100, 20.0), ("hold", 50, 50.0)):
        r = large["latency"][name]
        p99 = r["p99_ms"]
        shown = (
            f"p50 {_fmt(r['p50_ms'], ' ms')}, p99 {_fmt(p99, ' ms')}"
            if p99 is not None
            else f"p99 unbounded: {r['requests'] - r['ok']} of {r['requests']} unanswered"
        )
        add(
            f"{name} p99 at {rate} req/s",
            p99,
            shown,
            f"<= {goal:g} ms",
            p99 is not None and p99 <= goal,
        )
    # A median of fewer than five answers says nothing: no ratio (and no pass) then.
    answers = min(large["serial"]["search"]["requests"], small["serial"]["search"]["requests"])
    p50_large = large["serial"]["search"]["p50_ms"]
    p50_small = small["serial"]["search"]["p50_ms"]
    enough = answers >= 5 and p50_large is not None and bool(p50_small)
    ratio = p50_large / p50_small if enough else None
    add(
        "search p50 (one client), large / small ledger",
        ratio,
        f"{_fmt(p50_large, ' ms')} / {_fmt(p50_small, ' ms')} = {_fmt(ratio)}"
        + ("" if enough else f" (only {answers} answers)"),
        "<= 1.2 x",
        ratio is not None and ratio <= 1.2,
    )
    rss = large["rss_mb"]
    add("service resident memory", rss, f"{_fmt(rss, ' MB')}", "<= 150 MB", rss <= 150)
    events = large["events"]
    for name, title in (("feed", "long-poll reader"), ("webhook", "webhook receiver")):
        e = events[name]
        p99 = e["p99_ms"]
        shown = (
            f"p50 {_fmt(e['p50_ms'], ' ms')}, p99 {_fmt(p99, ' ms')} "
            f"(after the 201: {_fmt(e['after_201_p50_ms'])} / {_fmt(e['after_201_p99_ms'], ' ms')})"
            if p99 is not None
            else f"p99 unbounded: {e['missing']} of {e['events']} events never arrived"
        )
        add(
            f"hold commit -> {title} at {events['rate']:g}/s",
            p99,
            shown,
            "p99 <= 1 s",
            p99 is not None and p99 <= 1000,
        )


def _herd_target(
    large: dict[str, Any], add: Callable[[str, float | None, str, str, bool | None], None]
) -> None:
    parked = large.get("parked_polls")
    if parked is not None:
        ratio = parked["ratio"]
        add(
            f"search p99 with {parked['polls']:,} parked long polls / without",
            ratio,
            f"{_fmt(parked['with']['p99_ms'], ' ms')} / {_fmt(parked['without']['p99_ms'], ' ms')}"
            f" = {_fmt(ratio)} ({parked['woken_reads']:,.0f} woken re-reads)",
            "<= 2 x",
            ratio is not None and ratio <= 2,
        )


def print_table(report: dict[str, Any]) -> None:
    rows = report["targets"]
    machine = report["machine"]
    width = max(len(r["target"]) for r in rows)
    shown_width = max(len(r["shown"]) for r in rows)
    print()
    print(
        f"Places of Safety bench: {report['sizes']['large']['allocations']:,} vs "
        f"{report['sizes']['small']['allocations']:,} allocations, "
        f"{machine['cpus']} CPUs, load average "
        f"{machine['loadavg_before'][0]:.2f} -> {machine['loadavg_after'][0]:.2f}"
    )
    print(f"{'target':<{width}}  {'measured':<{shown_width}}  {'goal':<10}  result")
    print(f"{'-' * width}  {'-' * shown_width}  {'-' * 10}  ------")
    for r in rows:
        verdict = "n/a" if r["pass"] is None else "PASS" if r["pass"] else "FAIL"
        print(f"{r['target']:<{width}}  {r['shown']:<{shown_width}}  {r['goal']:<10}  {verdict}")
    print()


def git_state() -> dict[str, Any]:
    def git(*args: str) -> str:
        done = subprocess.run(  # noqa: S603
            ["git", *args],  # noqa: S607 (git from PATH, as a developer runs it)
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=False,
        )
        return done.stdout.strip()

    return {"commit": git("rev-parse", "HEAD"), "dirty": bool(git("status", "--porcelain"))}


# --- main ----------------------------------------------------------------------------------


async def run() -> int:
    plan = Plan.from_env()
    # Only the cold start on the erasure backlog (its databases seeded as usual).
    cold_start_only = os.environ.get("BENCH_COLD_START_ONLY", "") not in ("", "0")
    # Only search p99 beside parked long polls (issue 14), on the large data set.
    herd_only = os.environ.get("BENCH_HERD_ONLY", "") not in ("", "0")
    configure_logging("warning", "console")  # the in-process recording's request lines
    started = datetime.now(UTC)
    stamp = started.strftime("%Y%m%dT%H%M%SZ")
    work = RESULTS / stamp
    work.mkdir(parents=True, exist_ok=True)
    wrk = load.ensure_wrk()
    pgbench = load.find_pgbench()
    database_url = os.environ.get("DATABASE_URL") or None
    if database_url:
        server_dsn, where = database_url, hide_password(database_url)
    else:
        data_dir = Path(os.environ.get("DATA_DIR", ROOT / ".data")) / "bench"
        say(f"starting the embedded PostgreSQL under {data_dir}")
        server_dsn = await asyncio.to_thread(start_embedded_server, data_dir)
        where = f"embedded PostgreSQL ({data_dir})"
    report: dict[str, Any] = {
        "started_at": started.isoformat(),
        "quick": plan.quick,
        "git": git_state(),
        "database": where,
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "loadavg_before": list(os.getloadavg()),
        },
        "sizes": {
            "small": vars(plan.small) | {"database": plan.small.database},
            "large": vars(plan.large) | {"database": plan.large.database},
        },
        "service_settings": service_overrides(),
    }
    small_dsn = await prepare_database(server_dsn, plan.small)
    large_dsn = await prepare_database(server_dsn, plan.large)
    version_conn = await asyncpg.connect(large_dsn)
    report["postgresql"] = await version_conn.fetchval("SHOW server_version")
    await version_conn.close()

    if cold_start_only:
        report["large"] = {"cold_start": await cold_start(plan, server_dsn, work)}
        return finish(report, stamp, work)
    if herd_only:
        async with (
            session(plan, plan.large, large_dsn, work) as s,
            running_service(large_dsn, work / "service-large.log") as (base, _),
        ):
            report["large"] = {"parked_polls": await parked_polls(s, base)}
        return finish(report, stamp, work)

    async with (
        session(plan, plan.small, small_dsn, work) as s,
        running_service(small_dsn, work / "service-small.log") as (base, _),
    ):
        report["small"] = {
            "allocations": await s.conn.fetchval("SELECT count(*) FROM allocation"),
            "serial": {"search": await serial(s, base, wrk)},
            "latency": {
                "search": await fixed_rate(s, base, "search", s.searches, 100, 200),
            },
        }

    async with session(plan, plan.large, large_dsn, work) as s:
        say(f"{plan.large.name}: recording the service's SQL for pgbench")
        scripts = await record_scripts(s)
        await cleanup(s.conn, s.key_ids, s.started)
        report["pgbench_session_options"] = scripts["options"]
        async with running_service(large_dsn, work / "service-large.log") as (base, pid):
            large: dict[str, Any] = {
                "allocations": await s.conn.fetchval("SELECT count(*) FROM allocation"),
                "rss_mb_idle": rss_mb(pid),
            }
            # Throughput first, while the service's connections are as cold as pgbench's: both
            # sides pay PostgreSQL's first five custom plans per connection in the same time.
            large["throughput"] = await throughput(s, base, wrk, pgbench, scripts)
            large["serial"] = {"search": await serial(s, base, wrk)}
            large["latency"] = {
                "search": await fixed_rate(s, base, "search", s.searches, 100, 200),
                "hold": await fixed_rate(s, base, "hold", s.holds, 50, 201),
            }
            large["rss_mb"] = rss_mb(pid)
            # After the memory reading, so that row compares with the runs before this phase.
            large["events"] = await event_delivery(s, base)
            large["parked_polls"] = await parked_polls(s, base)
            report["large"] = large
    # Last: a copy of the large database is made, which needs every session on it closed.
    report["large"]["cold_start"] = await cold_start(plan, server_dsn, work)
    return finish(report, stamp, work)


def finish(report: dict[str, Any], stamp: str, work: Path) -> int:
    report["machine"]["loadavg_after"] = list(os.getloadavg())
    report["finished_at"] = datetime.now(UTC).isoformat()
    report["targets"] = targets(report)
    path = RESULTS / f"{stamp}.json"
    path.write_text(json.dumps(report, indent=2, default=str) + "\n", encoding="utf-8")
    print_table(report)
    say(f"report saved to {path.relative_to(ROOT)} (work files in {work.relative_to(ROOT)}/)")
    return 0


async def _cancellable() -> int:
    # SIGTERM cancels the run like Ctrl-C, so the service is stopped and the keys revoked.
    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    return await run()


def main() -> int:
    return asyncio.run(_cancellable())
