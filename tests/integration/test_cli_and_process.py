"""The `pos` command as an operator runs it: migrate, api-key, serve and SIGTERM."""

from __future__ import annotations

import asyncio
import signal
import socket
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import asyncpg
import pytest

from service.db import enclosing_data_dir
from service.migrate import load_migrations
from service.queries import reference, sites
from tests.support.process import pos, pos_env, served
from tests.support.until import until
from tests.support.world import cli_key, site_body

pytestmark = pytest.mark.slow  # `pos` processes


async def test_two_migrate_processes_apply_each_migration_exactly_once(
    fresh_database: str,
) -> None:
    env = pos_env(DATABASE_URL=fresh_database)
    results = await asyncio.gather(pos("migrate", env=env), pos("migrate", env=env))
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
    env = pos_env(DATABASE_URL=fresh_database)
    code, _, err = await pos("api-key", "list", env=env)
    assert code == 2 and "run `pos migrate` first" in err
    assert (await pos("migrate", env=env))[0] == 0
    code, out, err = await pos("api-key", "create", "--role", "admin", "--name", "ops", env=env)
    assert code == 0
    secret = out.strip().splitlines()[-1]
    assert secret.startswith("pos_") and len(secret) > 40
    # The key alone on stdout (issue 17), so `KEY=$(pos api-key create ...)` is the key; what
    # was made, and its id, on stderr.
    assert out == secret + "\n", out
    assert "created admin key" in err and secret not in err
    code, listing, _ = await pos("api-key", "list", env=env)
    assert code == 0 and "admin" in listing and "ops" in listing and secret not in listing
    key_id = listing.split()[0]
    code, out, err = await pos("api-key", "create", "--role", "officer", "--name", "x", env=env)
    assert code == 2 and "needs --force" in err
    code, out, err = await pos(
        "api-key", "create", "--role", "officer", "--force", "nowhere", "--name", "x", env=env
    )
    assert code == 2 and "no force" in err
    assert (await pos("api-key", "revoke", key_id, env=env))[0] == 0
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


async def test_seed_demo_command(fresh_database: str) -> None:
    env = pos_env(DATABASE_URL=fresh_database)
    assert (await pos("migrate", env=env))[0] == 0
    code, out, _ = await pos("seed-demo", env=env)
    assert code == 0 and "demo data seeded" in out and "pos_demo_officer_met" in out
    code, out, _ = await pos("seed-demo", env=env)
    assert code == 0 and "already present" in out
    code, _, err = await pos(
        "seed-demo", env=pos_env(DATABASE_URL=fresh_database, ENVIRONMENT="production")
    )
    assert code == 2 and "refused in production" in err


async def test_bad_configuration_fails_at_start_with_a_readable_message() -> None:
    code, _, err = await pos("migrate", env=pos_env(ENVIRONMENT="production", PORT="eighty"))
    assert code == 2
    assert "configuration error" in err
    assert "PORT" in err


async def test_production_refuses_demo_seed_and_embedded_database() -> None:
    code, _, err = await pos("migrate", env=pos_env(ENVIRONMENT="production"))
    assert code == 2 and "DATABASE_URL is required in production" in err


async def test_serve_then_sigterm_stops_cleanly(fresh_database: str) -> None:
    async with served(pos_env(DATABASE_URL=fresh_database, LOG_LEVEL="info")) as server:
        server.proc.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(server.proc.communicate(), timeout=30)
    assert server.proc.returncode == 0
    log = server.output.decode() + err.decode()
    assert '"event": "migration applied"' in log
    assert '"event": "expiry job stopped"' in log
    assert '"event": "database pool closed"' in log


async def test_sigterm_lets_an_in_flight_request_finish(fresh_database: str) -> None:
    """A PATCH held up on a row lock is in flight when SIGTERM arrives; it still gets its
    answer, and only then does the process exit."""
    async with served(pos_env(DATABASE_URL=fresh_database)) as server:
        setup = await asyncpg.connect(fresh_database)
        provider = await reference.create_provider(setup, "Drain Test", at=datetime.now(UTC))
        assert provider is not None
        secret = (
            await cli_key(setup, name="p", role="provider", provider_id=provider["id"])
        ).secret
        body = site_body()
        location = body.pop("location")
        site = await sites.create(
            setup, provider["id"], **body, **location, status="active", at=datetime.now(UTC)
        )
        await setup.close()

        locker = await asyncpg.connect(fresh_database)
        try:
            await locker.execute("BEGIN")
            await locker.execute("SELECT 1 FROM site WHERE id = $1 FOR UPDATE", site["id"])
            async with aiohttp.ClientSession() as session:
                patch = asyncio.create_task(
                    session.patch(
                        f"{server.base}/v1/sites/{site['id']}",
                        json={"status": "paused"},
                        headers={"Authorization": f"Bearer {secret}"},
                    )
                )
                await until(
                    lambda: locker.fetchval(
                        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                        " AND datname = current_database()"
                    ),
                    what="the PATCH to reach the lock",
                )

                server.proc.send_signal(signal.SIGTERM)

                def refused() -> bool:  # the listener closes first: new connections are refused
                    try:
                        with socket.create_connection(("127.0.0.1", server.port), timeout=1):
                            return False
                    except OSError:
                        return True

                await until(refused, what="the listener to close")
                assert server.proc.returncode is None, "exited with a request in flight"

                await locker.execute("COMMIT")
                async with await asyncio.wait_for(patch, timeout=10) as resp:
                    assert resp.status == 200
                    assert (await resp.json())["status"] == "paused"
        finally:
            await locker.close()
        _, err = await asyncio.wait_for(server.proc.communicate(), timeout=30)
    assert server.proc.returncode == 0
    assert '"event": "database pool closed"' in err.decode()


async def test_api_key_list_never_prints_control_or_bidi_characters(fresh_database: str) -> None:
    env = pos_env(DATABASE_URL=fresh_database)
    assert (await pos("migrate", env=env))[0] == 0
    # A name stored before the API refused such text (or written straight to the database).
    hostile = "ops\x1b[2J\x1b]0;owned\x07\u202egnp.exe\x08\r"
    conn = await asyncpg.connect(fresh_database)
    try:
        await cli_key(conn, name=hostile, role="admin")
    finally:
        await conn.close()
    code, listing, _ = await pos("api-key", "list", env=env)
    assert code == 0
    assert all(ch.isprintable() or ch == "\n" for ch in listing), listing
    assert r"ops\x1b[2J\x1b]0;owned\x07\u202egnp.exe\x08\r" in listing
    code, _, err = await pos("api-key", "create", "--role", "admin", "--name", hostile, env=env)
    assert code == 2 and "--name" in err


async def test_pos_serve_answers_what_the_http_parser_refuses_as_the_service(
    fresh_database: str,
) -> None:
    """`pos serve` runs the service's own runner: a request aiohttp's parser refuses is a
    problem that names no versions and quotes nothing it was sent."""
    async with served(pos_env(DATABASE_URL=fresh_database)) as server:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"GET /v1/forces HTTP/1.1\r\nHost: x\r\nX-Note: a\x01SECRET-9\r\n\r\n")
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(65536), timeout=10)
        writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.split(b" ", 2)[1] == b"400", answer
    assert b"\r\nServer: places-of-safety\r\n" in head
    assert b"application/problem+json" in head and b"aiohttp" not in head
    assert b"malformed-request" in body and b"SECRET-9" not in body


async def test_a_data_dir_inside_another_is_refused_and_named(tmp_path: Path) -> None:
    """`pos` run from inside `.data` (or with a DATA_DIR under another) silently started a
    second embedded cluster nested in the first (issue 17): it is refused, naming both, and
    nothing is started or created there. Every command says which database it uses."""
    outer = tmp_path / ".data"
    (outer / "postgres").mkdir(parents=True)
    (outer / "postgres" / "PG_VERSION").write_text("18\n")
    assert enclosing_data_dir(outer / "test") is None  # a sibling, as the tests' own
    assert enclosing_data_dir(outer) is None
    for nested in (outer / ".data", outer / "postgres" / "base" / ".data", outer / "a" / "b"):
        assert enclosing_data_dir(nested) in (outer.resolve(), (outer / "postgres").resolve())
        env = pos_env(DATA_DIR=str(nested))
        env.pop("DATABASE_URL", None)
        code, _, err = await pos("migrate", env=env)
        assert code == 2, err
        assert "inside another data directory" in err and str(outer) in err, err
        assert not (nested / "postgres").exists()
    url = "postgresql://u:secret@127.0.0.1:1/pos_x"
    code, _, err = await pos("migrate", env=pos_env(DATABASE_URL=url))
    assert code != 0
    assert "database: postgresql://u:***@127.0.0.1:1/pos_x (DATABASE_URL)" in err, err
    assert "secret" not in err
