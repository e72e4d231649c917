"""The `pos` command as an operator runs it: migrate, api-key, serve and SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
import time
import uuid
from collections.abc import AsyncIterator

import aiohttp
import asyncpg
import pytest

from service.db import ensure_database, with_database
from service.migrate import load_migrations
from tests.conftest import ROOT, drop_database


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "ENVIRONMENT"}}
    env.update({"LOG_FORMAT": "json", "SEED_DEMO": "false"}, **extra)
    return env


async def _pos(*args: str, env: dict[str, str]) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "service",
        *args,
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


@pytest.fixture
async def fresh_database(postgres_server: str) -> AsyncIterator[str]:
    name = f"pos_cli_{uuid.uuid4().hex[:10]}"
    await ensure_database(postgres_server, name)
    yield with_database(postgres_server, name)
    await drop_database(postgres_server, name)


async def test_two_migrate_processes_apply_each_migration_exactly_once(
    fresh_database: str,
) -> None:
    env = _env(DATABASE_URL=fresh_database)
    results = await asyncio.gather(_pos("migrate", env=env), _pos("migrate", env=env))
    assert [code for code, _, _ in results] == [0, 0], results
    versions = [m.version for m in load_migrations()]
    applied_lines = [out.strip() for _, out, _ in results]
    counts = sorted(int(line.split()[1]) for line in applied_lines)
    assert counts == [0, len(versions)], applied_lines
    conn = await asyncpg.connect(fresh_database)
    try:
        rows = await conn.fetch("SELECT version FROM schema_migration ORDER BY version")
    finally:
        await conn.close()
    assert [r["version"] for r in rows] == versions


async def test_api_key_commands(fresh_database: str) -> None:
    env = _env(DATABASE_URL=fresh_database)
    code, _, err = await _pos("api-key", "list", env=env)
    assert code == 2 and "run `pos migrate` first" in err
    assert (await _pos("migrate", env=env))[0] == 0
    code, out, _ = await _pos("api-key", "create", "--role", "admin", "--name", "ops", env=env)
    assert code == 0
    secret = out.strip().splitlines()[-1]
    assert secret.startswith("pos_") and len(secret) > 40
    code, listing, _ = await _pos("api-key", "list", env=env)
    assert code == 0 and "admin" in listing and "ops" in listing and secret not in listing
    key_id = listing.split()[0]
    code, out, err = await _pos("api-key", "create", "--role", "officer", "--name", "x", env=env)
    assert code == 2 and "needs --force" in err
    code, out, err = await _pos(
        "api-key", "create", "--role", "officer", "--force", "nowhere", "--name", "x", env=env
    )
    assert code == 2 and "no force" in err
    assert (await _pos("api-key", "revoke", key_id, env=env))[0] == 0
    conn = await asyncpg.connect(fresh_database)
    try:
        revoked = await conn.fetchval(
            "SELECT revoked_at IS NOT NULL FROM api_key WHERE id = $1::uuid", key_id
        )
        stored = await conn.fetchval("SELECT key_hash FROM api_key WHERE id = $1::uuid", key_id)
    finally:
        await conn.close()
    assert revoked is True
    assert secret.encode() not in stored


async def test_bad_configuration_fails_at_start_with_a_readable_message() -> None:
    code, _, err = await _pos("migrate", env=_env(ENVIRONMENT="production", PORT="eighty"))
    assert code == 2
    assert "configuration error" in err
    assert "PORT" in err


async def test_production_refuses_demo_seed_and_embedded_database() -> None:
    code, _, err = await _pos("migrate", env=_env(ENVIRONMENT="production"))
    assert code == 2 and "DATABASE_URL is required in production" in err


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_serve_then_sigterm_stops_cleanly(fresh_database: str) -> None:
    port = _free_port()
    env = _env(DATABASE_URL=fresh_database, PORT=str(port), LOG_LEVEL="info")
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "service",
        "serve",
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 30
        async with aiohttp.ClientSession() as session:
            while True:
                try:
                    async with session.get(f"http://127.0.0.1:{port}/readyz") as resp:
                        if resp.status == 200:
                            break
                except aiohttp.ClientConnectionError:
                    pass
                assert time.monotonic() < deadline, "the service never became ready"
                await asyncio.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(proc.communicate(), timeout=30)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0
    log = err.decode()
    assert '"event": "migration applied"' in log
    assert '"event": "database pool closed"' in log


async def test_sigterm_lets_an_in_flight_request_finish(fresh_database: str) -> None:
    """A PATCH held up on a row lock is in flight when SIGTERM arrives; it still gets its
    answer, and only then does the process exit."""
    from service.auth import display_prefix, generate_key, hash_key
    from service.models import SiteIn
    from service.queries import api_keys, reference, sites
    from tests.support.world import site_body

    port = _free_port()
    env = _env(DATABASE_URL=fresh_database, PORT=str(port))
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "service",
        "serve",
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"
    locker = None
    try:
        async with aiohttp.ClientSession() as session:
            deadline = time.monotonic() + 30
            while True:
                try:
                    async with session.get(f"{base}/readyz") as resp:
                        if resp.status == 200:
                            break
                except aiohttp.ClientConnectionError:
                    pass
                assert time.monotonic() < deadline, "the service never became ready"
                await asyncio.sleep(0.1)

            setup = await asyncpg.connect(fresh_database)
            provider = await reference.create_provider(setup, "Drain Test")
            secret = generate_key()
            await api_keys.create(
                setup,
                name="p",
                role="provider",
                force_code=None,
                provider_id=provider["id"],
                key_hash=hash_key(secret),
                prefix=display_prefix(secret),
            )
            site = await sites.create(setup, provider["id"], SiteIn.model_validate(site_body()))
            await setup.close()

            locker = await asyncpg.connect(fresh_database)
            await locker.execute("BEGIN")
            await locker.execute("SELECT 1 FROM site WHERE id = $1 FOR UPDATE", site["id"])

            patch = asyncio.create_task(
                session.patch(
                    f"{base}/v1/sites/{site['id']}",
                    json={"status": "paused"},
                    headers={"Authorization": f"Bearer {secret}"},
                )
            )
            deadline = time.monotonic() + 10
            while not await locker.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                " AND datname = current_database()"
            ):
                assert time.monotonic() < deadline, "the PATCH never reached the lock"
                await asyncio.sleep(0.05)

            proc.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + 10
            while True:  # the listener closes first: new connections are refused
                try:
                    with socket.create_connection(("127.0.0.1", port), timeout=1):
                        pass
                except OSError:
                    break
                assert time.monotonic() < deadline, "the listener never closed"
                await asyncio.sleep(0.05)
            assert proc.returncode is None, "the process exited with a request in flight"

            await locker.execute("COMMIT")
            async with await asyncio.wait_for(patch, timeout=10) as resp:
                assert resp.status == 200
                assert (await resp.json())["status"] == "paused"
        _, err = await asyncio.wait_for(proc.communicate(), timeout=30)
    finally:
        if locker is not None:
            await locker.close()
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0
    assert '"event": "database pool closed"' in err.decode()
