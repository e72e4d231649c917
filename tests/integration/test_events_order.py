"""The feed's order under interleaved commits (issue 9): an event is read only once every
transaction that began writing before it has ended, so a reader following next_cursor never
skips an event that commits late and never reads one twice.

Transactions are driven by hand on connections of their own; the feed is read through the API.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from typing import Any, NamedTuple

import asyncpg
import pytest

from service import keys
from service.db import Pool
from service.handlers.events import feed_cursor
from service.queries import events as event_queries
from tests.support.until import until
from tests.support.world import World

INSERT_EVENT = """
INSERT INTO event (type, site_id, provider_id, data, occurred_at)
VALUES ('site.availability_changed', $1::uuid, $2::uuid,
        jsonb_build_object('site_id', $1::uuid, 'cause', 'site_changed'), now())
RETURNING id, public_id::text
"""


@pytest.fixture
async def connections(database_dsn: str) -> AsyncIterator[list[asyncpg.Connection[Any]]]:
    conns = [await asyncpg.connect(database_dsn) for _ in range(4)]
    yield conns
    for conn in conns:
        await conn.close()


async def head(world: World, db: Pool) -> str:
    async with db.acquire() as conn:
        row = await conn.fetchrow(event_queries.HEAD)
    assert row is not None
    sealer = await world.api.client.server.app[keys.CURSORS].get()
    return feed_cursor(sealer, (row["tx"], row["id"]))


async def settled(db: Pool) -> None:
    """Until no committed event is held back: a writing transaction anywhere on the server
    (other databases' too: transaction ids are the server's) holds the feed back a moment."""

    async def clear() -> bool:
        async with db.acquire() as conn:
            _, held_back = await event_queries.watch(conn)
        return not held_back

    await until(clear, what="no event held back")


class Reader:
    """A feed reader in the provider's scope that follows next_cursor, keeping what it read."""

    def __init__(self, world: World, cursor: str) -> None:
        self.world = world
        self.cursor = cursor
        self.seen: list[str] = []

    async def read(self, **params: Any) -> list[str]:
        reply = await self.world.api.get(
            "/v1/events", key=self.world.provider, params={"after": self.cursor, **params}
        )
        assert reply.status == 200, reply.body
        ids = [item["id"] for item in reply.body["items"]]
        self.seen += ids
        self.cursor = reply.body["next_cursor"]
        return ids


class Inserted(NamedTuple):
    id: int  # the feed's own sequence, for the test to compare
    public: str  # what the feed shows


async def insert(conn: asyncpg.Connection[Any], world: World, site_id: str) -> Inserted:
    row = await conn.fetchrow(INSERT_EVENT, site_id, world.provider_id)
    assert row is not None
    return Inserted(row["id"], row["public_id"])


async def test_a_later_commit_waits_for_an_earlier_writer(
    world: World, db: Pool, connections: list[asyncpg.Connection[Any]]
) -> None:
    site = await world.site()
    t1, t2 = connections[:2]
    reader = Reader(world, await head(world, db))
    late = Reader(world, reader.cursor)

    first = t1.transaction()
    await first.start()
    e1 = await insert(t1, world, site["id"])  # T1 writes first: the smaller id and tx
    async with t2.transaction():
        e2 = await insert(t2, world, site["id"])
    assert e1.id < e2.id
    # T2 has committed, but T1 is still running: neither is read yet.
    assert await reader.read() == []
    await first.commit()
    await settled(db)
    assert await reader.read() == [e1.public, e2.public]
    assert await reader.read() == []
    assert await late.read() == [e1.public, e2.public]


async def test_feed_order_is_the_writers_transaction_order_not_event_id_order(
    world: World, db: Pool, connections: list[asyncpg.Connection[Any]]
) -> None:
    site = await world.site()
    t1, t2 = connections[:2]
    reader = Reader(world, await head(world, db))

    first = t1.transaction()
    await first.start()
    await t1.fetchval("SELECT pg_current_xact_id()")  # T1 becomes a writer first...
    async with t2.transaction():
        e2 = await insert(t2, world, site["id"])
    e1 = await insert(t1, world, site["id"])  # ...but its event takes the later id
    assert e1.id > e2.id
    assert await reader.read() == []
    await first.commit()
    await settled(db)
    # Transaction order: a reader past e2 by id would have skipped e1; by (tx, id) it cannot.
    assert await reader.read() == [e1.public, e2.public]


async def test_a_long_poll_sees_events_held_back_by_a_writer_that_rolls_back(
    world: World, db: Pool, connections: list[asyncpg.Connection[Any]]
) -> None:
    """The held-back event's own commit notified while it could not be read, and the writer
    holding it back writes no event, so its end notifies no one: the listener notices."""
    site = await world.site()
    t0, t2 = connections[:2]
    listener = world.api.client.server.app[keys.EVENT_LISTENER]
    reader = Reader(world, await head(world, db))

    blocker = t0.transaction()
    await blocker.start()
    await t0.fetchval("SELECT pg_current_xact_id()")
    poll = asyncio.create_task(reader.read(wait=30))
    await until(lambda: listener.waiting >= 1, what="the reader to park")
    async with t2.transaction():
        e2 = await insert(t2, world, site["id"])
    assert await Reader(world, reader.cursor).read() == []
    await blocker.rollback()
    # Answered with the event long before its 30 s wait ran out: the listener noticed.
    assert await asyncio.wait_for(poll, 10) == [e2.public]


async def test_a_reader_following_its_cursor_reads_every_event_once_under_interleaved_commits(
    world: World, db: Pool, connections: list[asyncpg.Connection[Any]]
) -> None:
    site = await world.site()
    reader = Reader(world, await head(world, db))
    committed: list[str] = []
    rng = random.Random(9)

    async def writer(conn: asyncpg.Connection[Any]) -> None:
        for _ in range(12):
            tx = conn.transaction()
            await tx.start()
            ids = [(await insert(conn, world, site["id"])).public for _ in range(rng.randint(1, 3))]
            await asyncio.sleep(rng.random() / 100)  # interleave with the others
            if rng.random() < 0.2:
                await tx.rollback()
            else:
                await tx.commit()
                committed.extend(ids)

    writers = asyncio.gather(*(writer(conn) for conn in connections))
    while not writers.done():
        await reader.read(limit=7)
    await writers
    await settled(db)
    while await reader.read(limit=7):
        pass
    assert len(reader.seen) == len(set(reader.seen))
    assert sorted(reader.seen) == sorted(committed)
    assert len(committed) > 30
