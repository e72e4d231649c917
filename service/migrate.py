"""Applies sql/NNNN_*.sql in order, each once, under an advisory lock."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import structlog

from service.db import Connection
from service.resources import migrations_dir

log = structlog.get_logger(__name__)

# (class, object) for pg_advisory_lock(int, int): a two-key lock never collides with the
# single-bigint keys that idempotency uses.
LOCK_CLASS = 0x504F53  # "POS"
MIGRATE_LOCK = (LOCK_CLASS, 1)

FILE_PATTERN = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")

CREATE_LEDGER = """
CREATE TABLE IF NOT EXISTS schema_migration (
    version    integer PRIMARY KEY,
    name       text NOT NULL,
    checksum   text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""
SELECT_APPLIED = "SELECT version, name, checksum FROM schema_migration ORDER BY version"
INSERT_APPLIED = "INSERT INTO schema_migration (version, name, checksum) VALUES ($1, $2, $3)"
SELECT_LATEST = "SELECT max(version) FROM schema_migration"


class MigrationError(RuntimeError):
    pass


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def load_migrations(directory: Path | None = None) -> list[Migration]:
    directory = directory or migrations_dir()
    found: list[Migration] = []
    for path in sorted(directory.glob("*.sql")):
        match = FILE_PATTERN.match(path.name)
        if match is None:
            raise MigrationError(f"migration file {path.name} is not named NNNN_name.sql")
        found.append(Migration(int(match[1]), match[2], path.read_text(encoding="utf-8")))
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise MigrationError("two migration files share a version number")
    return found


async def migrate(conn: Connection, migrations: list[Migration] | None = None) -> list[int]:
    """Apply every pending migration; return the versions this call applied.

    A session advisory lock serialises concurrent callers (replicas starting together):
    the second waits, then finds nothing left to do.
    """
    migrations = load_migrations() if migrations is None else migrations
    applied_now: list[int] = []
    await conn.execute("SELECT pg_advisory_lock($1, $2)", *MIGRATE_LOCK)
    try:
        await conn.execute(CREATE_LEDGER)
        applied = {row["version"]: row for row in await conn.fetch(SELECT_APPLIED)}
        for migration in migrations:
            done = applied.get(migration.version)
            if done is not None:
                if done["checksum"] != migration.checksum:
                    raise MigrationError(
                        f"migration {migration.version:04d}_{migration.name} was edited "
                        "after it was applied; add a new migration instead"
                    )
                continue
            # One transaction per file: a failing file leaves no half-applied schema.
            async with conn.transaction():
                await conn.execute(migration.sql)
                await conn.execute(
                    INSERT_APPLIED, migration.version, migration.name, migration.checksum
                )
            applied_now.append(migration.version)
            log.info("migration applied", version=migration.version, name=migration.name)
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1, $2)", *MIGRATE_LOCK)
    return applied_now


async def is_current(conn: Connection, migrations: list[Migration] | None = None) -> bool:
    """True when the database has every migration this code knows of."""
    migrations = load_migrations() if migrations is None else migrations
    try:
        latest = await conn.fetchval(SELECT_LATEST)
    except asyncpg.UndefinedTableError:
        return False
    expected = max((m.version for m in migrations), default=0)
    return latest is not None and latest >= expected
