"""`pos purge`: personal fields go once the retention period after a stay has passed; the
counts reports need stay."""

from __future__ import annotations

import asyncio
import json
import os
import pty
import re
import sys
import uuid
from datetime import UTC, datetime

import pytest

from service.db import Pool
from tests.support.backlog import add_backlog, erased_once_each, long_ago
from tests.support.clock import ManualClock
from tests.support.process import ROOT, pos, pos_env
from tests.support.world import World

pytestmark = pytest.mark.slow  # `pos purge` processes


async def test_purge_erases_personal_fields_of_long_ended_bookings(
    world: World, db: Pool, clock: ManualClock, database_dsn: str
) -> None:
    site = await world.site()
    await world.bed(site["id"])
    await world.bed(site["id"])
    start = clock.now()
    ended = await world.book(site["id"], start, notes="speaks little English")
    live = await world.book(site["id"], start)
    await world.act(ended["id"], "confirm")
    await world.act(ended["id"], "check-in", key=world.provider)
    await world.act(ended["id"], "check-out", key=world.provider)
    await world.act(live["id"], "confirm")
    async with db.acquire() as conn:
        await conn.execute(
            # Retention counts from the stay's end (ended_at; null while it is live).
            "UPDATE allocation SET updated_at = now() - interval '91 days',"
            " ended_at = ended_at - interval '91 days'"
            " WHERE id = ANY($1::uuid[])",
            [ended["id"], live["id"]],
        )
        await conn.execute(
            "INSERT INTO idempotency_key (api_key_id, key, request_hash, response_status,"
            " response_type, response_body, created_at)"
            " SELECT id, 'old-key', '\\x00', 201, 'application/json', '{}',"
            " now() - interval '25 hours' FROM api_key LIMIT 1"
        )

    code, out, _ = await pos("purge", env=pos_env(DATABASE_URL=database_dsn))
    assert code == 0, out
    assert "erased personal fields of 1 booking(s)" in out

    erased = (await world.api.get(f"/v1/bookings/{ended['id']}", key=world.admin)).body
    assert (erased["person_ref"], erased["officer_collar"], erased["notes"]) == (None, None, None)
    assert erased["status"] == "departed" and len(erased["history"]) == 4
    assert erased["custody_suite"] == ended["custody_suite"]
    kept = (await world.api.get(f"/v1/bookings/{live['id']}", key=world.admin)).body
    assert kept["person_ref"] == live["person_ref"]
    async with db.acquire() as conn:
        assert (
            await conn.fetchval("SELECT count(*) FROM idempotency_key WHERE key = 'old-key'") == 0
        )


async def _purge_on_a_terminal(env: dict[str, str]) -> tuple[int, str, str]:
    """`pos purge` with stderr on a pseudo-terminal: (exit code, stdout, what the terminal
    showed)."""
    leader, follower = pty.openpty()
    try:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "service",
            "purge",
            cwd=ROOT,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=follower,
        )
        os.close(follower)
        shown = bytearray()

        def read_terminal() -> None:
            while True:
                try:
                    chunk = os.read(leader, 65536)
                except OSError:  # the terminal's last writer has gone
                    return
                if not chunk:
                    return
                shown.extend(chunk)

        reading = asyncio.create_task(asyncio.to_thread(read_terminal))
        out, _ = await asyncio.wait_for(proc.communicate(), timeout=60)
        await asyncio.wait_for(reading, timeout=10)
    finally:
        os.close(leader)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), shown.decode(errors="replace")


async def test_purge_on_a_backlog_shows_progress_on_a_terminal_and_logs_each_batch(
    world: World, db: Pool, clock: ManualClock, database_dsn: str
) -> None:
    site = await world.site()
    bed = await world.bed(site["id"])
    async with db.acquire() as conn:
        first = await add_backlog(
            conn, uuid.UUID(bed["id"]), world.force, 30, long_ago(datetime.now(UTC))
        )
    env = pos_env(DATABASE_URL=database_dsn, ERASURE_BATCH_SIZE="10", LOG_LEVEL="info")

    # In logs (stderr not a terminal): one plain line per batch, no progress drawn.
    code, out, err = await pos("purge", env=env)
    assert code == 0, err
    batches = [json.loads(line) for line in err.splitlines() if '"erasure batch"' in line]
    assert len(batches) >= 3
    assert all(b["erased"] <= 10 and "ms" in b for b in batches)
    assert batches[-1]["erased_so_far"] >= 30
    assert "left" not in err
    async with db.acquire() as conn:
        assert await erased_once_each(conn, first) == []

    # On a terminal: the erased count, the rate and what is left, redrawn after each batch.
    async with db.acquire() as conn:
        second = await add_backlog(
            conn, uuid.UUID(bed["id"]), world.force, 25, long_ago(datetime.now(UTC))
        )
    code, out, shown = await _purge_on_a_terminal(env)
    assert code == 0, shown
    assert "erased personal fields of 25 booking(s)" in out
    assert re.search(r"erased 10 of 25 booking\(s\), [\d,]+/s, 15 left", shown), shown
    assert re.search(r"erased 25 of 25 booking\(s\), [\d,]+/s, 0 left", shown), shown
    async with db.acquire() as conn:
        assert await erased_once_each(conn, second) == []
