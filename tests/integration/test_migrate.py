"""Migrations: applied in order, once each, never silently re-edited."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest

from service.migrate import Migration, MigrationError, is_current, migrate


@pytest.fixture
async def conn(fresh_database: str) -> AsyncIterator[asyncpg.Connection]:
    connection = await asyncpg.connect(fresh_database)
    yield connection
    await connection.close()


async def test_applies_in_order_once_and_reports_currency(conn: asyncpg.Connection) -> None:
    first = [Migration(1, "a", "CREATE TABLE a (x int)")]
    both = [*first, Migration(2, "b", "INSERT INTO a VALUES (1)")]
    assert not await is_current(conn, first)
    assert await migrate(conn, first) == [1]
    assert await is_current(conn, first) and not await is_current(conn, both)
    assert await migrate(conn, both) == [2]
    assert await migrate(conn, both) == []
    assert await conn.fetchval("SELECT count(*) FROM a") == 1


async def test_a_failing_file_leaves_nothing_half_applied(conn: asyncpg.Connection) -> None:
    broken = [Migration(1, "broken", "CREATE TABLE t (x int); SELECT no_such_function()")]
    with pytest.raises(asyncpg.UndefinedFunctionError):
        await migrate(conn, broken)
    assert await conn.fetchval("SELECT to_regclass('t')") is None
    assert await conn.fetchval("SELECT count(*) FROM schema_migration") == 0


async def test_an_edited_applied_migration_is_refused(conn: asyncpg.Connection) -> None:
    await migrate(conn, [Migration(1, "a", "CREATE TABLE a (x int)")])
    with pytest.raises(MigrationError, match="edited after it was applied"):
        await migrate(conn, [Migration(1, "a", "CREATE TABLE a (x bigint)")])
