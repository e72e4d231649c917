"""Faults, against `pos serve` processes: two replicas racing, PostgreSQL going away and coming
back under load, and SIGTERM under load.

Each test is bounded (deadlines, never a sleep waiting for state) and takes a few seconds.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import asyncpg

from service.auth import issue_key
from service.migrate import migrate
from service.models import BedIn, SiteIn
from service.queries import beds, reference, sites
from tests.support.process import Server, pos_env, served
from tests.support.world import booking_body, site_body, unique

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
        await reference.create_force(conn, force, f"Force {force}")
        provider = await reference.create_provider(conn, unique("Provider"))
        site = await sites.create(conn, provider["id"], SiteIn.model_validate(site_body()))
        bed_ids = [
            str(
                (await beds.create(conn, site["id"], BedIn(label=f"Room {i}", room_type="single")))[
                    "id"
                ]
            )
            for i in range(beds_count)
        ]
        keys = [
            (
                await issue_key(
                    conn, name=unique("officer"), role="officer", force_code=force, provider_id=None
                )
            )[1]
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


POOL_MAX = 10


async def _waiting_on_locks(conn: asyncpg.Connection) -> int:
    """Sessions of this database waiting on a lock. Ask outside a transaction: inside one,
    pg_stat_activity is a snapshot taken at its first read."""
    count: int = await conn.fetchval(
        "SELECT count(*) FROM pg_stat_activity"
        " WHERE datname = current_database() AND wait_event_type = 'Lock'"
    )
    return count


async def test_two_replicas_race_a_thousand_holds_for_the_last_bed(fresh_database: str) -> None:
    """1,000 holds for one free bed, split across two `pos serve` processes on one database:
    exactly one wins. Only PostgreSQL's exclusion constraint sees both processes' claims.

    So that the race is a race and not a queue (the client alone cannot send holds fast enough
    to keep both replicas busy), the last bed's row is locked, as a competing claim would lock
    it, until every pooled connection of both replicas has found the bed free and waits for it;
    then all of them try to take it at once."""
    seeded = await _seed(fresh_database, beds_count=2, officers=50)
    env = pos_env(DATABASE_URL=fresh_database, LOG_LEVEL="warning", DB_POOL_MAX=str(POOL_MAX))
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

        gate = await asyncpg.connect(fresh_database)
        watch = await asyncpg.connect(fresh_database)
        try:
            await gate.execute("BEGIN")
            await gate.execute("SELECT 1 FROM bed WHERE id = $1::uuid FOR NO KEY UPDATE", last_bed)
            holds = asyncio.gather(*(hold(i) for i in range(1, 1001)))
            deadline = time.monotonic() + 30
            while await _waiting_on_locks(watch) < len(replicas) * POOL_MAX:
                assert time.monotonic() < deadline, "the holds never reached the gate"
                await asyncio.sleep(0.05)
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
    live = await _live_allocations(fresh_database, seeded.site_id)
    assert sorted(live) == sorted(seeded.bed_ids), live
