"""The feed's order under interleaved commits (issue 9): an event is read only once every
transaction that began writing before it has ended, so a reader following next_cursor never
skips an event that commits late and never reads one twice.

Transactions are driven by hand on connections of their own; the feed is read through the API.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator
from typing import Any, NamedTuple

import asyncpg
import pytest

from service import keys
from service.db import Pool
from service.queries import events as event_queries
from tests.api.test_events_feed import head
from tests.support.until import until
from tests.support.world import World

INSERT_EVENT = """
INSERT INTO event (type, site_id, provider_id, data, occurred_at)
VALUES ('site.availability_changed', $1::uuid, $2::uuid,
        jsonb_build_object('site_id', $1::uuid, 'cause', 'site_changed'), now())
RETURNING id, public_id::text
"""


# Sessions that write events name themselves as the service's (sql/0021_feed_horizon.sql).
WRITER = {"application_name": "places-of-safety/test"}


@pytest.fixture
async def connections(database_dsn: str) -> AsyncIterator[list[asyncpg.Connection[Any]]]:
    conns = [await asyncpg.connect(database_dsn, server_settings=WRITER) for _ in range(4)]
    yield conns
    for conn in conns:
        await conn.close()


@pytest.fixture
async def bystanders(
    database_dsn: str, fresh_database: str
) -> AsyncIterator[list[asyncpg.Connection[Any]]]:
    """Sessions that write but never an event: an operator's session in this database (a bulk
    import, a migration by hand), and one in another database on the same server."""
    conns = [
        await asyncpg.connect(database_dsn, server_settings={"application_name": "psql"}),
        await asyncpg.connect(fresh_database),
    ]
    yield conns
    for conn in conns:
        await conn.close()


async def settled(db: Pool) -> None:
    """Until no committed event is held back: a service session's transaction in this
    database holds the feed back a moment."""

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
    reader = Reader(world, await head(world.api, db))
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
    reader = Reader(world, await head(world.api, db))

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
    reader = Reader(world, await head(world.api, db))

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
    world: World,
    db: Pool,
    connections: list[asyncpg.Connection[Any]],
    bystanders: list[asyncpg.Connection[Any]],
) -> None:
    """With transactions the horizon passes over (another database's, an operator's) coming
    and going between the writers' too."""
    site = await world.site()
    reader = Reader(world, await head(world.api, db))
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

    async def bystander(conn: asyncpg.Connection[Any]) -> None:
        for _ in range(12):
            async with conn.transaction():
                await conn.fetchval("SELECT txid_current()")
                await asyncio.sleep(rng.random() / 50)

    writers = asyncio.gather(
        *(writer(conn) for conn in connections), *(bystander(conn) for conn in bystanders)
    )
    while not writers.done():
        await reader.read(limit=7)
    await writers
    await settled(db)
    while await reader.read(limit=7):
        pass
    assert len(reader.seen) == len(set(reader.seen))
    assert sorted(reader.seen) == sorted(committed)
    assert len(committed) > 30


async def test_long_transactions_that_write_no_event_do_not_hold_a_long_poll_back(
    world: World,
    db: Pool,
    connections: list[asyncpg.Connection[Any]],
    bystanders: list[asyncpg.Connection[Any]],
) -> None:
    """Issue 15 item 2: transaction ids are the server's, but a transaction in another database,
    or one in this database that is not the service's, can never put an event in the feed: it
    is passed over, and an event committed beside it reaches a long-polling reader at once."""
    site = await world.site()
    listener = world.api.client.server.app[keys.EVENT_LISTENER]
    reader = Reader(world, await head(world.api, db))
    held = [conn.transaction() for conn in bystanders]
    for conn, tx in zip(bystanders, held, strict=True):
        await tx.start()
        await conn.fetchval("SELECT txid_current()")  # a writer from now until it ends
    try:
        poll = asyncio.create_task(reader.read(wait=20))
        await until(lambda: listener.waiting >= 1, what="the poll to park")
        async with connections[0].transaction():
            event = await insert(connections[0], world, site["id"])
        committed = time.monotonic()
        assert await asyncio.wait_for(poll, 5) == [event.public]
        assert time.monotonic() - committed < 3
        # Read again from the start: the event is there, and the head has moved past it.
        assert await Reader(world, await head(world.api, db)).read() == []
    finally:
        for tx in held:
            await tx.rollback()


async def test_only_the_services_sessions_write_events(
    world: World, database_dsn: str, bystanders: list[asyncpg.Connection[Any]]
) -> None:
    """A session the horizon passes over cannot write an event behind it: not one of another
    name, and not one that takes the service's name after it connected."""
    site = await world.site()
    operator = bystanders[0]
    with pytest.raises(asyncpg.RaiseError, match="only the service writes events"):
        await insert(operator, world, site["id"])
    await operator.execute("SET application_name = 'places-of-safety'")
    with pytest.raises(asyncpg.RaiseError, match="only the service writes events"):
        await insert(operator, world, site["id"])
