"""A cold start on an erasure backlog (issue 15): the service started on the large data set
after a force's history was imported (or the job was paused), with most past stays' personal
fields back and long due for erasure. Measured while its first erasure round drains them:

- the process's peak resident memory (VmHWM, the kernel's own high-water mark);
- the longest transaction of the service, sampled every 50 ms from `pg_stat_activity`
  (`now() - xact_start` per backend and transaction): the longest that wrote (had a
  transaction id: what a feed reader can wait for), and apart the VACUUM that follows the round
  (it takes no transaction id and holds no reader back);
- event-to-reader latency during the drain: holds at a steady rate, each one's `booking.held`
  timed to a long-polling feed reader (bench/delivery.py's reader and arithmetic);
- the time from the process's start until no booking is due any more.

The backlog is made in a copy of the large database (`CREATE DATABASE … TEMPLATE`, dropped at
the end), so the data set the other phases use keeps its erased history."""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg

from bench import delivery
from bench.load import Request
from service.db import with_database

HOLD_RATE = 5.0  # holds a second while the backlog drains
SAMPLE_S = 0.05
DUE_EVERY_S = 1.0
DRAIN_LIMIT_S = 1800.0

# Bookings whose stay ended more than the retention period ago get personal fields again, as
# after an import: a backlog of due erasures.
MAKE_BACKLOG = """
UPDATE booking b
SET person_ref = 'IMPORTED-' || substr(b.id::text, 1, 8), officer_collar = 'PC 0',
    notes = 'imported history', personal_erased_at = NULL
FROM allocation a
WHERE a.id = b.id
  AND a.ended_at <= now() - make_interval(days => $1)
"""

DUE = """
SELECT count(*)
FROM booking b JOIN allocation a ON a.id = b.id
WHERE b.personal_erased_at IS NULL AND a.ended_at <= now() - make_interval(days => $1)
"""

# Whether any is still due: cheap while the drain runs (a count would take seconds a time and
# slow what it measures).
ANY_DUE = """
SELECT EXISTS (
    SELECT 1
    FROM booking b JOIN allocation a ON a.id = b.id
    WHERE b.personal_erased_at IS NULL AND a.ended_at <= now() - make_interval(days => $1)
)
"""

# The service's transactions now open on the copy: each one's age, whether it has a
# transaction id (it wrote), and whether it is the round's VACUUM.
TRANSACTIONS = """
SELECT pid, xact_start, extract(epoch FROM clock_timestamp() - xact_start) AS age,
       backend_xid IS NOT NULL AS wrote, query ILIKE 'vacuum%' AS vacuum
FROM pg_stat_activity
WHERE datname = $1 AND application_name = $2 AND xact_start IS NOT NULL
"""


async def copy_with_backlog(
    server_dsn: str, source: str, copy: str, retention_days: int, say: Callable[[str], None]
) -> tuple[str, int]:
    """`copy` made from `source` (which must have no session open) with the backlog; its DSN
    and how many bookings are due."""
    admin = await asyncpg.connect(server_dsn)
    try:
        quoted_copy = await admin.fetchval("SELECT quote_ident($1)", copy)
        quoted_source = await admin.fetchval("SELECT quote_ident($1)", source)
        await admin.execute(f"DROP DATABASE IF EXISTS {quoted_copy} WITH (FORCE)")
        for attempt in range(20):  # autovacuum may be in the source for a moment
            try:
                await admin.execute(
                    f"CREATE DATABASE {quoted_copy} TEMPLATE {quoted_source} STRATEGY FILE_COPY"
                )
                break
            except asyncpg.ObjectInUseError:
                if attempt == 19:
                    raise
                await asyncio.sleep(1)
    finally:
        await admin.close()
    dsn = with_database(server_dsn, copy)
    conn = await asyncpg.connect(dsn)
    try:
        say(f"  {copy}: personal fields back on every stay ended {retention_days}+ days ago")
        await conn.execute(MAKE_BACKLOG, retention_days)
        await conn.execute("VACUUM (ANALYZE) booking")
        due: int = await conn.fetchval(DUE, retention_days)
    finally:
        await conn.close()
    return dsn, due


async def drop(server_dsn: str, name: str) -> None:
    admin = await asyncpg.connect(server_dsn)
    try:
        quoted = await admin.fetchval("SELECT quote_ident($1)", name)
        await admin.execute(f"DROP DATABASE IF EXISTS {quoted} WITH (FORCE)")
    finally:
        await admin.close()


class Transactions:
    """The longest service transaction seen so far, sampled from pg_stat_activity."""

    def __init__(self) -> None:
        self.longest_writing_s = 0.0
        self.longest_writing_query = ""
        self.longest_vacuum_s = 0.0
        self.longest_other_s = 0.0
        self.samples = 0

    async def sample(self, conn: asyncpg.Connection, database: str, app: str) -> None:
        while True:
            for row in await conn.fetch(TRANSACTIONS, database, app):
                age = float(row["age"])
                if row["vacuum"]:
                    self.longest_vacuum_s = max(self.longest_vacuum_s, age)
                elif row["wrote"]:
                    self.longest_writing_s = max(self.longest_writing_s, age)
                else:
                    self.longest_other_s = max(self.longest_other_s, age)
            self.samples += 1
            await asyncio.sleep(SAMPLE_S)


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    raise RuntimeError("no VmHWM")


@contextlib.asynccontextmanager
async def sampling(
    dsn: str, database: str, app: str
) -> AsyncIterator[tuple[Transactions, asyncpg.Connection]]:
    """Samples the service's transactions from before it starts until the block ends (on a
    connection of its own); yields the samples and another connection for the caller."""
    sampler = await asyncpg.connect(dsn)
    conn = await asyncpg.connect(dsn)
    seen = Transactions()
    task = asyncio.create_task(seen.sample(sampler, database, app))
    try:
        yield seen, conn
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await sampler.close()
        await conn.close()


async def drain_with_holds(
    conn: asyncpg.Connection,
    base: str,
    admin_key: str,
    holds: list[Request],
    retention_days: int,
    started: float,
    say: Callable[[str], None],
    *,
    grace: float = 10.0,
) -> dict[str, Any]:
    """Holds at HOLD_RATE/s, each timed to a long-polling feed reader, until nothing is due;
    the drain's time from `started` (monotonic) and the latencies."""
    rng = random.Random(15)
    queue = rng.sample(holds, len(holds))
    answered: dict[str, float] = {}
    statuses: dict[str, int] = {}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None)) as session:
        feed = delivery.Arrivals()
        cursor = await delivery.feed_end(session, base, admin_key)
        reader = asyncio.create_task(delivery.follow_feed(session, base, admin_key, cursor, feed))

        async def hold(request: Request) -> None:
            status = "error"
            try:
                async with session.post(
                    base + request.path,
                    data=request.body,
                    headers={"Authorization": f"Bearer {request.key}"}
                    | {"Content-Type": "application/json"},
                ) as response:
                    body = await response.read()
                    at = time.time()
                    status = str(response.status)
                    if response.status == 201:
                        answered[str(json.loads(body)["id"])] = at
            except aiohttp.ClientError:
                pass
            statuses[status] = statuses.get(status, 0) + 1

        tasks: list[asyncio.Task[None]] = []
        try:
            sent_from = time.perf_counter()
            next_due = 0.0
            drained_s: float | None = None
            while True:
                now = time.monotonic()
                if now >= next_due:
                    if not await conn.fetchval(ANY_DUE, retention_days):
                        drained_s = now - started
                        break
                    next_due = now + DUE_EVERY_S
                    if now - started > DRAIN_LIMIT_S:
                        due = int(await conn.fetchval(DUE, retention_days))
                        say(f"  still {due:,} due after {DRAIN_LIMIT_S:g} s; giving up")
                        break
                next_hold = sent_from + len(tasks) / HOLD_RATE - time.perf_counter()
                if queue and next_hold <= 0:
                    tasks.append(asyncio.create_task(hold(queue.pop())))
                    continue
                wait = next_due - time.monotonic()
                if queue:
                    wait = min(wait, next_hold)
                await asyncio.sleep(max(wait, 0))
            if tasks:
                _, unanswered = await asyncio.wait(tasks, timeout=grace)
                for task in unanswered:
                    task.cancel()
                await asyncio.gather(*unanswered, return_exceptions=True)
                if unanswered:
                    statuses["unanswered"] = len(unanswered)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(grace):
                    while not all(b in feed.at for b in answered):
                        feed.news.clear()
                        await feed.news.wait()
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
    return {
        "drained_s": None if drained_s is None else round(drained_s, 1),
        "hold_rate": HOLD_RATE,
        "holds": len(tasks),
        "statuses": statuses,
        "feed": delivery._summary(  # the delivery phase's arithmetic
            feed, answered, {"how": f"GET /v1/events wait={delivery.FEED_WAIT_S}"}
        ),
    }


async def run_cold_start(
    start_service: Callable[[], contextlib.AbstractAsyncContextManager[tuple[str, int]]],
    make_admin_key: Callable[[], Awaitable[str]],
    sample_dsn: str,
    database: str,
    app: str,
    holds: list[Request],
    retention_days: int,
    say: Callable[[str], None],
) -> dict[str, Any]:
    """Start the service on the backlog and measure its first round (see the module's doc)."""
    async with sampling(sample_dsn, database, app) as (seen, conn):
        started = time.monotonic()
        async with start_service() as (base, pid):
            ready_s = time.monotonic() - started
            admin_key = await make_admin_key()
            result = await drain_with_holds(
                conn, base, admin_key, holds, retention_days, started, say
            )
            result["peak_rss_mb"] = peak_rss_mb(pid)
        result["ready_s"] = round(ready_s, 1)
        result["longest_writing_transaction_s"] = round(seen.longest_writing_s, 3)
        result["longest_read_transaction_s"] = round(seen.longest_other_s, 3)
        result["longest_vacuum_s"] = round(seen.longest_vacuum_s, 3)
        result["activity_samples"] = seen.samples
    return result
