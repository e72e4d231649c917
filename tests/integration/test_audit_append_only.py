"""The audit log is append-only, enforced by the database: UPDATE, DELETE and TRUNCATE fail
for the service's own database user (the test DSN's, which owns the table), and the rows stay
as they were."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import pytest

from service.db import Connection, Pool

INSERT = """
INSERT INTO audit (at, api_key_id, role, scope, request_id, action, object_type, object_id,
                   fields)
VALUES ($1, NULL, 'cli', NULL, $2, 'erase', 'booking', $3, ARRAY['person_ref', 'notes'])
RETURNING id
"""
ROW = "SELECT * FROM audit WHERE id = $1"


@pytest.fixture
async def conn(db: Pool) -> AsyncIterator[Connection]:
    async with db.acquire() as connection:
        yield connection


async def _insert(conn: Connection) -> tuple[int, dict[str, Any]]:
    at = datetime(2031, 1, 1, 12, tzinfo=UTC)
    audit_id = await conn.fetchval(INSERT, at, f"req-{uuid.uuid4().hex}", str(uuid.uuid4()))
    row = await conn.fetchrow(ROW, audit_id)
    assert row is not None
    return int(audit_id), dict(row)


async def test_the_service_user_may_append(conn: Connection, database_dsn: str) -> None:
    # The pool's user is the one the service runs as (the DSN's), and it owns the table:
    # owners bypass grants, so only the trigger can refuse it.
    user = await conn.fetchval("SELECT current_user")
    assert user == (urlsplit(database_dsn).username or user)
    owner = await conn.fetchval(
        "SELECT pg_get_userbyid(relowner) FROM pg_class WHERE oid = 'audit'::regclass"
    )
    assert owner == user
    audit_id, row = await _insert(conn)
    assert row["action"] == "erase" and row["fields"] == ["person_ref", "notes"]
    assert audit_id > 0


@pytest.mark.parametrize(
    ("statement", "operation"),
    [
        ("UPDATE audit SET fields = '{}', request_id = 'rewritten' WHERE id = $1", "UPDATE"),
        ("UPDATE audit SET at = at", "UPDATE"),
        ("DELETE FROM audit WHERE id = $1", "DELETE"),
        ("DELETE FROM audit", "DELETE"),
        ("TRUNCATE audit", "TRUNCATE"),
    ],
    ids=["update-one", "update-all", "delete-one", "delete-all", "truncate"],
)
async def test_changing_or_removing_audit_rows_fails(
    conn: Connection, statement: str, operation: str
) -> None:
    audit_id, before = await _insert(conn)
    count = await conn.fetchval("SELECT count(*) FROM audit")
    args = [audit_id] if "$1" in statement else []
    with pytest.raises(asyncpg.InsufficientPrivilegeError) as refused:
        await conn.execute(statement, *args)
    assert refused.value.sqlstate == "42501"
    assert str(refused.value) == f"the audit log is append-only: {operation} is not allowed"
    assert dict(await conn.fetchrow(ROW, audit_id) or {}) == before
    assert await conn.fetchval("SELECT count(*) FROM audit") == count


async def test_a_refused_change_inside_a_transaction_changes_nothing(conn: Connection) -> None:
    audit_id, before = await _insert(conn)
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        async with conn.transaction():
            await conn.execute("UPDATE audit SET object_id = 'other' WHERE id = $1", audit_id)
    assert dict(await conn.fetchrow(ROW, audit_id) or {}) == before
