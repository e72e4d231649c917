"""Faults, against `pos serve` processes: two replicas racing, PostgreSQL going away and coming
back under load, SIGTERM under load, and SIGTERM in the middle of an erasure backlog.

Each test is bounded (deadlines, never a sleep waiting for state) and takes a few seconds.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import aiohttp
import asyncpg
import pytest

from service.db import ensure_database, with_database
from service.migrate import migrate
from service.queries import beds, reference, sites
from tests.support.backlog import add_backlog, erased_once_each, long_ago, unerased
from tests.support.postgres import throwaway_postgres
from tests.support.process import UNLIMITED, Server, pos_env, served
from tests.support.until import until
from tests.support.world import booking_body, cli_key, site_body, unique

pytestmark = pytest.mark.slow  # faults, against `pos serve` processes

PROBLEM_JSON = "application/problem+json"
LIVE = ("held", "pending", "confirmed", "arrived")


@dataclass
class Seeded:
    site_id: str
    bed_ids: list[str]
    officers: list[str]


async def _seed(dsn: str, *, beds_count: int, officers: int) -> Seeded:
    """A migrated database with one force and its officers' keys, one provider and one site
    with `beds_count` beds: made with the service's own queries, as the API would."""
    conn = await asyncpg.connect(dsn)
    try:
        await migrate(conn)
        force = unique("f")
        at = datetime.now(UTC)
        await reference.create_force(conn, force, f"Force {force}", at=at)
        provider = await reference.create_provider(conn, unique("Provider"), at=at)
        assert provider is not None
        body = site_body()
        location = body.pop("location")
        site = await sites.create(conn, provider["id"], **body, **location, status="active", at=at)
        bed_ids = [
            str(
                (
                    await beds.create(
                        conn,
                        site["id"],
                        label=f"Room {i}",
                        room_type="single",
                        wheelchair_accessible=False,
                        max_dependants=0,
                        in_service=True,
                        at=at,
                    )
                )["id"]
            )
            for i in range(beds_count)
        ]
        keys = [
            (await cli_key(conn, name=unique("officer"), role="officer", force_code=force)).secret
            for _ in range(officers)
        ]
    finally:
        await conn.close()
    return Seeded(str(site["id"]), bed_ids, keys)


def _hold(seeded: Seeded, i: int) -> tuple[dict[str, Any], dict[str, str]]:
    """The i-th hold of a test: a body and headers (round-robin over the officers' keys)."""
    start = datetime.now(UTC) + timedelta(hours=1)
    headers = {
        "Authorization": f"Bearer {seeded.officers[i % len(seeded.officers)]}",
        "Idempotency-Key": unique("hold"),
    }
    return booking_body(seeded.site_id, start, 24), headers


async def _live_allocations(dsn: str, site_id: str) -> list[str]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            "SELECT bed_id FROM allocation WHERE site_id = $1::uuid AND status = ANY($2::text[])",
            site_id,
            list(LIVE),
        )
    finally:
        await conn.close()
    return [str(r["bed_id"]) for r in rows]


# --- two replicas, one database --------------------------------------------------------------


@pytest.fixture
async def own_database() -> AsyncIterator[str]:
    """A database on a PostgreSQL server of this test's own. The tests using it hold a
    transaction open for seconds (a gate on the last bed, the audit table locked): on the
    server the other workers share, that would hold back every database's event feed for as
    long (transaction ids, and so the feed's horizon, are the server's), and their long polls
    would wait on a test they know nothing of."""
    with throwaway_postgres() as pg:
        await ensure_database(pg.dsn, "pos")
        yield with_database(pg.dsn, "pos")


POOL_MAX = 10


async def _waiting_on_locks(conn: asyncpg.Connection) -> int:
    """Sessions of this database waiting on a lock. Ask outside a transaction: inside one,
    pg_stat_activity is a snapshot taken at its first read."""
    count: int = await conn.fetchval(
        "SELECT count(*) FROM pg_stat_activity"
        " WHERE datname = current_database() AND wait_event_type = 'Lock'"
    )
    return count


async def test_two_replicas_race_a_thousand_holds_for_the_last_bed(own_database: str) -> None:
    """1,000 holds for one free bed, split across two `pos serve` processes on one database:
    exactly one wins. Only PostgreSQL's exclusion constraint sees both processes' claims.

    So that the race is a race and not a queue (the client alone cannot send holds fast enough
    to keep both replicas busy), the last bed's row is locked, as a competing claim would lock
    it, until every pooled connection of both replicas has found the bed free and waits for it;
    then all of them try to take it at once."""
    seeded = await _seed(own_database, beds_count=2, officers=50)
    env = pos_env(
        DATABASE_URL=own_database, LOG_LEVEL="warning", DB_POOL_MAX=str(POOL_MAX), **UNLIMITED
    )
    async with AsyncExitStack() as stack:
        replicas: list[Server] = list(
            await asyncio.gather(
                stack.enter_async_context(served(env, drain=True)),
                stack.enter_async_context(served(env, drain=True)),
            )
        )
        sessions = [
            await stack.enter_async_context(
                aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=100))
            )
            for _ in replicas
        ]
        # One bed is taken already: the other is the last.
        body, headers = _hold(seeded, 0)
        async with sessions[0].post(
            f"{replicas[0].base}/v1/bookings", json=body, headers=headers
        ) as resp:
            assert resp.status == 201, await resp.text()
            taken = (await resp.json())["bed_id"]
        (last_bed,) = set(seeded.bed_ids) - {taken}

        async def hold(i: int) -> tuple[int, str]:
            body, headers = _hold(seeded, i)
            replica = i % len(replicas)
            async with sessions[replica].post(
                f"{replicas[replica].base}/v1/bookings", json=body, headers=headers
            ) as resp:
                return resp.status, (await resp.json())["type"] if resp.status != 201 else ""

        gate = await asyncpg.connect(own_database)
        watch = await asyncpg.connect(own_database)
        try:
            await gate.execute("BEGIN")
            await gate.execute("SELECT 1 FROM bed WHERE id = $1::uuid FOR NO KEY UPDATE", last_bed)
            holds = asyncio.gather(*(hold(i) for i in range(1, 1001)))

            async def at_the_gate() -> bool:
                return await _waiting_on_locks(watch) >= len(replicas) * POOL_MAX

            await until(at_the_gate, 30, what="the holds to reach the gate")
            await gate.execute("ROLLBACK")
            results = await asyncio.wait_for(holds, timeout=120)
        finally:
            await gate.close()
            await watch.close()
        for replica in replicas:
            assert replica.proc.returncode is None
    assert Counter(status for status, _ in results) == {201: 1, 409: 999}, Counter(results)
    assert {kind for status, kind in results if status == 409} == {
        "urn:places-of-safety:problem:no-capacity"
    }
    live = await _live_allocations(own_database, seeded.site_id)
    assert sorted(live) == sorted(seeded.bed_ids), live


# --- PostgreSQL stops and comes back under load ---------------------------------------------


@dataclass
class Answer:
    sent_at: float
    answered_at: float
    status: int | None  # None: no HTTP answer at all (the connection failed)
    content_type: str = ""
    retry_after: str | None = None
    booking_id: str | None = None
    error: str = ""


async def _send_hold(session: aiohttp.ClientSession, base: str, seeded: Seeded, i: int) -> Answer:
    body, headers = _hold(seeded, i)
    sent_at = time.monotonic()
    try:
        async with session.post(f"{base}/v1/bookings", json=body, headers=headers) as resp:
            payload = await resp.json(content_type=None)
            return Answer(
                sent_at,
                time.monotonic(),
                resp.status,
                resp.content_type,
                resp.headers.get("Retry-After"),
                payload["id"] if resp.status == 201 else None,
            )
    except aiohttp.ClientError as exc:
        return Answer(sent_at, time.monotonic(), None, error=repr(exc))


async def _readyz(session: aiohttp.ClientSession, base: str) -> tuple[int, str]:
    async with session.get(f"{base}/readyz") as resp:
        await resp.read()
        return resp.status, resp.content_type


async def test_postgres_stops_and_restarts_under_a_stream_of_holds() -> None:
    """PostgreSQL stops (fast: sessions are cut) under a steady stream of holds and comes back:
    every 201 a client saw is in the database afterwards; meanwhile only 503 problem+json with
    Retry-After is answered, /readyz is 503, and it is 200 again within 5 s of the return; the
    service process never exits."""
    with throwaway_postgres() as pg:
        await ensure_database(pg.dsn, "pos")
        dsn = with_database(pg.dsn, "pos")
        seeded = await _seed(dsn, beds_count=400, officers=10)
        env = pos_env(DATABASE_URL=dsn, LOG_LEVEL="warning", **UNLIMITED)
        async with served(env, drain=True) as server, aiohttp.ClientSession() as session:
            answers: list[Answer] = []
            sent = 0
            stop = asyncio.Event()

            async def client() -> None:
                nonlocal sent
                while not stop.is_set():
                    sent += 1
                    answers.append(await _send_hold(session, server.base, seeded, sent))
                    await asyncio.sleep(0.01)  # pacing: a steady stream, not a flood

            def count(status: int) -> int:
                return sum(1 for a in answers if a.status == status)

            def alive_and(done: Callable[[], bool]) -> Callable[[], bool]:
                def check() -> bool:
                    assert server.proc.returncode is None, "the service exited"
                    return done()

                return check

            clients = [asyncio.create_task(client()) for _ in range(4)]
            try:
                await until(
                    alive_and(lambda: count(201) >= 20), 30, what="a hold before the outage"
                )

                await pg.astop()
                down_at = time.monotonic()
                assert await _readyz(session, server.base) == (503, PROBLEM_JSON)
                outage_answers = len(answers)
                await until(
                    alive_and(
                        lambda: (
                            len(answers) - outage_answers >= 40 and time.monotonic() - down_at > 1
                        )
                    ),
                    30,
                    what="answers during the outage",
                )
                assert await _readyz(session, server.base) == (503, PROBLEM_JSON)

                up_started = time.monotonic()
                await pg.astart()

                async def ready() -> bool:
                    return (await _readyz(session, server.base))[0] == 200

                # A bound that is the point (SPEC: ready again within 5 s of the database).
                await until(ready, 5, what="/readyz to be 200 within 5 s", every=0.05)
                ready_at = time.monotonic()
                after = count(201)
                await until(
                    alive_and(lambda: count(201) >= after + 20), 30, what="a hold after the outage"
                )
            finally:
                stop.set()
                await asyncio.gather(*clients)
            assert server.proc.returncode is None, "the service exited"

        during = [a for a in answers if a.sent_at >= down_at and a.answered_at <= up_started]
        assert len(during) >= 40
        assert {(a.status, a.content_type, a.retry_after) for a in during} == {
            (503, PROBLEM_JSON, "1")
        }, Counter((a.status, a.content_type, a.error) for a in during)
        # Around the cut an answer may be a 201 (committed before the cut) or a 503 (not, or
        # not known): never anything else, and never a dropped connection.
        assert {a.status for a in answers} <= {201, 503}, Counter(
            (a.status, a.error) for a in answers
        )
        assert all(
            a.content_type == PROBLEM_JSON and a.retry_after == "1"
            for a in answers
            if a.status == 503
        )
        # Once ready, ready: no dead connection lingers in the pool.
        back = Counter(a.status for a in answers if a.sent_at > ready_at)
        assert set(back) == {201}, back
        held = [a.booking_id for a in answers if a.status == 201]
        conn = await asyncpg.connect(dsn)
        try:
            stored = await conn.fetchval(
                "SELECT count(*) FROM booking WHERE id = ANY($1::uuid[])", held
            )
        finally:
            await conn.close()
        assert stored == len(held)


# --- SIGTERM under load ------------------------------------------------------------------------


@dataclass
class Sent:
    """When a request's body left the client; set by the session's trace hook."""

    at: float | None = None


async def _body_sent(
    session: aiohttp.ClientSession,
    ctx: SimpleNamespace,
    params: aiohttp.TraceRequestChunkSentParams,
) -> None:
    ctx.trace_request_ctx.at = time.monotonic()


async def test_sigterm_under_load_answers_every_request_sent_before_it(
    fresh_database: str,
) -> None:
    """Forty clients hold beds as fast as they are answered; SIGTERM arrives among them. Every
    request whose body had left the client before the signal gets a whole answer (not a reset),
    later ones are answered or refused, and the process exits 0."""
    seeded = await _seed(fresh_database, beds_count=60, officers=10)
    trace = aiohttp.TraceConfig()
    trace.on_request_chunk_sent.append(_body_sent)
    outcomes: list[tuple[Sent, int | None, float]] = []
    stop = asyncio.Event()
    async with (
        served(
            pos_env(DATABASE_URL=fresh_database, LOG_LEVEL="warning", **UNLIMITED), drain=True
        ) as server,
        aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=40), trace_configs=[trace]
        ) as session,
    ):

        async def client(n: int) -> None:
            i = n
            while not stop.is_set():
                i += 40
                body, headers = _hold(seeded, i)
                sent = Sent()
                try:
                    async with session.post(
                        f"{server.base}/v1/bookings",
                        json=body,
                        headers=headers,
                        trace_request_ctx=sent,
                    ) as resp:
                        await resp.read()
                        outcomes.append((sent, resp.status, time.monotonic()))
                except aiohttp.ClientConnectionError:
                    outcomes.append((sent, None, time.monotonic()))
                    return  # the server is going or gone

        clients = [asyncio.create_task(client(n)) for n in range(40)]
        try:
            await until(lambda: len(outcomes) >= 100, 30, what="100 answers before the signal")
            signalled_at = time.monotonic()
            server.proc.send_signal(signal.SIGTERM)
            async with asyncio.timeout(30):
                code, output = await server.exited()
        finally:
            stop.set()
            async with asyncio.timeout(30):
                await asyncio.gather(*clients)

    assert code == 0, output[-2000:]
    before = [
        (status, answered_at)
        for sent, status, answered_at in outcomes
        if sent.at is not None and sent.at < signalled_at
    ]
    in_flight = [status for status, answered_at in before if answered_at > signalled_at]
    assert len(in_flight) >= 10, f"only {len(in_flight)} requests were in flight at the signal"
    answered = Counter(status for status, _ in before)
    assert set(answered) <= {201, 409}, answered  # None would be a request dropped unanswered
    after = {status for sent, status, _ in outcomes if sent.at is None or sent.at >= signalled_at}
    assert after <= {201, 409, None}, after


# Backends on the test's database other than the asking one: what a process left there. In a
# transaction the server keeps its first reading of pg_stat_activity: read afresh each time.
OTHER_BACKENDS = """
SELECT count(*) FROM pg_stat_activity
WHERE datname = current_database() AND pid <> pg_backend_pid()
"""
# The erasure's batch waits for a lock to write its audit rows.
AUDIT_WAITING = """
SELECT EXISTS (
    SELECT 1 FROM pg_stat_activity
    WHERE datname = current_database() AND wait_event_type = 'Lock'
      AND query LIKE '%INSERT INTO audit%'
)
"""


async def _activity(conn: asyncpg.Connection[Any], query: str) -> Any:
    await conn.execute("SELECT pg_stat_clear_snapshot()")
    return await conn.fetchval(query)


async def _nothing_left_on_the_server(conn: asyncpg.Connection[Any]) -> None:
    """Until the server has let go of every backend of the exited process (a backend ends a
    moment after its client's socket closes); fails after 10 s, showing what is left."""

    async def none_left() -> bool:
        return await _activity(conn, OTHER_BACKENDS) == 0

    try:
        await until(none_left, 10, what="the exited process's backends to end", every=0.02)
    except AssertionError as exc:
        left = await conn.fetch(
            "SELECT state, wait_event, query FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        raise AssertionError(f"{exc}: {left}") from None


async def _stopped_within(server: Server, seconds: float) -> tuple[int, str, float]:
    """SIGTERM, then (exit code, output, seconds it took); fails if it took longer."""
    signalled_at = time.monotonic()
    server.proc.send_signal(signal.SIGTERM)
    async with asyncio.timeout(seconds + 5):
        code, output = await server.exited()
    took = time.monotonic() - signalled_at
    assert took < seconds, f"{took:.1f} s after SIGTERM; {output[-2000:]}"
    return code, output, took


async def test_sigterm_mid_erasure_ends_in_time_and_the_next_start_finishes_it(
    own_database: str,
) -> None:
    """A backlog of erasure that takes many batches: SIGTERM mid-round ends the process within
    SHUTDOWN_TIMEOUT_SECONDS (after the current batch: exit 0); with the job stuck inside a
    batch (the audit table locked) it is cut at the limit (exit 1); neither leaves anything on
    the server; the next start finishes the round, every booking erased and audited once."""
    seeded = await _seed(own_database, beds_count=1, officers=0)
    count, timeout = 3000, 5.0
    env = pos_env(
        DATABASE_URL=own_database,
        LOG_LEVEL="info",
        ERASURE_BATCH_SIZE="20",
        SHUTDOWN_TIMEOUT_SECONDS=str(timeout),
    )
    conn = await asyncpg.connect(own_database)
    try:
        force = await conn.fetchval("SELECT code FROM force")
        suite = await add_backlog(
            conn, seeded.bed_ids[0], force, count, long_ago(datetime.now(UTC))
        )

        # 1. SIGTERM while the round drains: the job ends its batch and the process exits 0.
        async with served(env, drain=True) as server:

            async def started() -> bool:
                return await unerased(conn, suite) < count

            await until(started, 30, what="the erasure to start")
            code, output, _ = await _stopped_within(server, timeout)
        assert code == 0, output[-2000:]
        assert "erasure job stopped" in output
        await _nothing_left_on_the_server(conn)
        left = await unerased(conn, suite)
        assert 0 < left < count, "SIGTERM did not land mid-round: make the backlog bigger"

        # 2. The job stuck inside a batch (its audit rows wait for a lock): cut at the limit,
        # its query cancelled on the server, exit 1.
        async with conn.transaction():
            await conn.execute("LOCK TABLE audit IN ACCESS EXCLUSIVE MODE")
            async with served(env, drain=True) as server:
                await until(
                    lambda: _activity(conn, AUDIT_WAITING),
                    30,
                    what="the erasure to reach its audit",
                )
                code, output, _ = await _stopped_within(server, timeout)
            assert code == 1, output[-2000:]
            assert "erasure job cut at the shutdown limit" in output
            await _nothing_left_on_the_server(conn)
        assert await unerased(conn, suite) == left  # the cut batch rolled back

        # 3. The next start finishes the round.
        async with served(env, drain=True) as server:

            async def finished() -> bool:
                return await unerased(conn, suite) == 0

            await until(finished, 60, what="the next start to finish the erasure", every=0.05)
            code, output, _ = await _stopped_within(server, timeout)
        assert code == 0, output[-2000:]
        assert await erased_once_each(conn, suite) == []
    finally:
        await conn.close()
