"""The event feed: committed events in feed order, (tx, id), as each scope may read them.

Only events of transactions older than every transaction still in progress that may write
events are read (sql/0010_feed_and_webhooks.sql says why; sql/0021_feed_horizon.sql which
ones count: this database's service sessions, not another database's transactions nor an
operator's): an event that commits late is never passed over.
One statement per scope, so each is planned through its own index."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from uuid import UUID

import asyncpg

from service.db import Connection

# Every event (admins).
ALL = """
SELECT e.id, e.public_id, e.tx::text AS tx, e.type, e.occurred_at, e.booking_id, e.site_id,
       e.force_code, e.provider_id, e.data
FROM event e
WHERE (e.tx, e.id) > ($1::text::xid8, $2::bigint)
  AND e.tx < $5::text::xid8
  AND ($3::text[] IS NULL OR e.type = ANY ($3::text[]))
ORDER BY e.tx, e.id
LIMIT $4
"""

# A force's bookings' events and every site's availability changes (officers): two index
# walks from the position, merged.
FORCE = """
SELECT * FROM (
    (SELECT e.id, e.public_id, e.tx::text AS tx, e.type, e.occurred_at, e.booking_id, e.site_id,
       e.force_code, e.provider_id, e.data
     FROM event e
     WHERE e.force_code = $5
       AND (e.force_code, e.tx, e.id) > ($5, $1::text::xid8, $2::bigint)
       AND e.tx < $6::text::xid8
       AND ($3::text[] IS NULL OR e.type = ANY ($3::text[]))
     ORDER BY e.force_code, e.tx, e.id
     LIMIT $4)
    UNION ALL
    (SELECT e.id, e.public_id, e.tx::text AS tx, e.type, e.occurred_at, e.booking_id, e.site_id,
       e.force_code, e.provider_id, e.data
     FROM event e
     WHERE e.type = 'site.availability_changed'
       AND (e.tx, e.id) > ($1::text::xid8, $2::bigint)
       AND e.tx < $6::text::xid8
       AND ($3::text[] IS NULL OR e.type = ANY ($3::text[]))
     ORDER BY e.tx, e.id
     LIMIT $4)
) AS merged
ORDER BY tx::xid8, id
LIMIT $4
"""

# The events of a provider's sites: their bookings and their availability (providers).
PROVIDER = """
SELECT e.id, e.public_id, e.tx::text AS tx, e.type, e.occurred_at, e.booking_id, e.site_id,
       e.force_code, e.provider_id, e.data
FROM event e
WHERE e.provider_id = $5
  AND (e.provider_id, e.tx, e.id) > ($5, $1::text::xid8, $2::bigint)
  AND e.tx < $6::text::xid8
  AND ($3::text[] IS NULL OR e.type = ANY ($3::text[]))
ORDER BY e.provider_id, e.tx, e.id
LIMIT $4
"""

# Where a new reader or subscription starts when it asks for "from now on": the feed's end.
HEAD = """
SELECT coalesce((SELECT max(e.tx) FROM event e WHERE e.tx < h.horizon), h.horizon)::text AS tx,
       coalesce((SELECT max(e.id) FROM event e WHERE e.tx < h.horizon), 0) AS id
FROM (SELECT event_horizon() AS horizon) AS h
"""

# What the event listener watches: the horizon (every transaction below it that may write
# events has ended, so the events below it are the readable ones), and whether committed
# events are held back behind a transaction still running (readable once it ends, which
# notifies no one when it wrote no events).
WATCH = """
SELECT s.xmin::text AS horizon,
       EXISTS (SELECT 1 FROM event e WHERE e.tx >= s.xmin) AS held_back
FROM (SELECT event_horizon() AS xmin) AS s
"""

# Whose events became readable when the horizon moved from $1 to $2: each (type, force,
# provider) once, so the listener wakes only the readers whose scope sees one of them.
WRITTEN = """
SELECT DISTINCT e.type, e.force_code, e.provider_id
FROM event e
WHERE e.tx >= $1::text::xid8 AND e.tx < $2::text::xid8
"""

# The key that seals cursors (sql/0016_feed_privacy_and_revocation.sql).
CURSOR_KEY = "SELECT secret FROM cursor_key"

# Every transaction below this one that may write events has ended (sql/0021: this database's
# service sessions; the others write none): the bound up to which a read is complete. Read
# before the events (any such transaction below it has committed or rolled back by then, so
# the read that follows sees all of them).
HORIZON = "SELECT event_horizon()::text"

# A position before every event.
START: tuple[str, int] = ("0", 0)


@dataclass(frozen=True)
class Read:
    """Events read, and the position the next read starts from: after the last event when the
    page is full, else the horizon itself (nothing in scope lies below it unread), so a
    reader or subscription whose filters match nothing for a while moves on instead of
    walking the same stretch of other events again and again."""

    rows: list[asyncpg.Record]
    position: tuple[str, int]


async def page(
    conn: Connection,
    *,
    after: tuple[str, int] | None,
    limit: int,
    force_code: str | None = None,
    provider_id: UUID | None = None,
    types: Sequence[str] | None = None,
) -> Read:
    """Committed events after `after` (a (tx, id) position; None: from the start), in feed
    order, for one scope: a force (officers), a provider, or everything (neither given)."""
    start = after or START
    tx, event_id = start
    wanted = None if types is None else list(types)
    horizon: str = await conn.fetchval(HORIZON)
    if force_code is not None:
        rows = await conn.fetch(FORCE, tx, event_id, wanted, limit, force_code, horizon)
    elif provider_id is not None:
        rows = await conn.fetch(PROVIDER, tx, event_id, wanted, limit, provider_id, horizon)
    else:
        rows = await conn.fetch(ALL, tx, event_id, wanted, limit, horizon)
    if len(rows) == limit:
        return Read(rows, (rows[-1]["tx"], rows[-1]["id"]))
    # Never backwards: a position handed in is at most a horizon read earlier.
    moved = max(start, (horizon, 0), key=lambda p: (int(p[0]), p[1]))
    return Read(rows, moved)


async def watch(conn: Connection) -> tuple[str, bool]:
    """(the horizon, whether committed events are held back behind it)."""
    row = await conn.fetchrow(WATCH)
    assert row is not None
    return row["horizon"], row["held_back"]


async def written(
    conn: Connection, since: str, until: str
) -> list[tuple[str, str | None, UUID | None]]:
    """(type, force code, provider id) of the events readable below `until` and not below
    `since` (two horizons), each combination once."""
    rows = await conn.fetch(WRITTEN, since, until)
    return [(row["type"], row["force_code"], row["provider_id"]) for row in rows]


async def cursor_key(conn: Connection) -> bytes:
    secret: bytes | None = await conn.fetchval(CURSOR_KEY)
    assert secret is not None, "sql/0016 makes the cursor key"
    return secret
