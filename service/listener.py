"""The process's one LISTEN connection: long-polling feed readers wait here, not on the pool.

A dedicated asyncpg connection (never a pooled one) to the pool's database listens on
`pos_event` (sql/0010_feed_and_webhooks.sql: one notification per committed transaction that
wrote events). On each notification it reads where the readable feed ends, and moves
`generation` on when that grew; any number of requests wait for the move without holding a
connection. A commit can also be held back behind another transaction still running (the feed
reads only transactions older than every running one), and that one may end without
notifying: while events are held back the listener re-reads the feed's end every 50 ms to 1 s.

If the connection drops, waiters are woken, and until it is back (reconnecting with backoff)
each waits at most FALLBACK_SECONDS before reading again.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import structlog
from aiohttp import web

from service import keys
from service.db import hide_password
from service.queries import events

log = structlog.get_logger(__name__)

CHANNEL = "pos_event"
# While the listener is down, a waiting reader reads again at least this often.
FALLBACK_SECONDS = 1.0
# Reconnecting: the first retry, doubling up to the last.
RETRY_FIRST_SECONDS = 0.5
RETRY_MAX_SECONDS = 30.0
# Events held back behind a running transaction: re-read after this, doubling up to 1 s.
HELD_BACK_FIRST_SECONDS = 0.05
HELD_BACK_MAX_SECONDS = 1.0
# A quiet connection is still read this often: a connection dropped without a word (no RST)
# is found out, and a lost notification costs at most this long.
IDLE_CHECK_SECONDS = 30.0
QUERY_TIMEOUT_SECONDS = 10.0


class _Lost(Exception):
    """The LISTEN connection closed under us."""


class EventListener:
    """Tells waiting feed readers when the feed may have grown.

    A reader takes `generation` BEFORE it queries, and if it found nothing, awaits
    `wait(generation_taken, seconds)`: a commit between its query and its wait has already
    moved the generation on, so it is never missed.
    """

    def __init__(self, dsn: str) -> None:
        self._dsn = dsn
        self.generation = 0
        self.connected = False
        self.stopping = False
        # Requests waiting now (for metrics and tests).
        self.waiting = 0
        self._moved = asyncio.Event()
        self._poke = asyncio.Event()

    def _advance(self) -> None:
        """A new generation: wake everyone waiting on the old one."""
        self.generation += 1
        moved, self._moved = self._moved, asyncio.Event()
        moved.set()

    def release(self) -> None:
        """At shutdown: every waiter reads once more and answers, and none waits again."""
        self.stopping = True
        self._advance()

    async def wait(self, seen: int, seconds: float) -> bool:
        """Until the feed may have grown since generation `seen`, or `seconds` pass.

        True: read again (something may be there; or the listener is down and this was the
        fallback's second). False: the time ran out with nothing new.
        """
        if self.generation != seen or self.stopping:
            return True
        fallback = not self.connected
        if fallback:
            seconds = min(seconds, FALLBACK_SECONDS)
        moved = self._moved
        self.waiting += 1
        try:
            async with asyncio.timeout(max(seconds, 0)):
                await moved.wait()
        except TimeoutError:
            return fallback
        finally:
            self.waiting -= 1
        return True

    def _on_notify(self, *_: Any) -> None:
        self._poke.set()

    def _on_terminated(self, *_: Any) -> None:
        self._poke.set()

    async def run(self) -> None:
        """Connect, listen, reconnect with backoff: until cancelled."""
        delay = RETRY_FIRST_SECONDS
        while True:
            try:
                conn = await asyncpg.connect(
                    self._dsn,
                    timeout=QUERY_TIMEOUT_SECONDS,
                    server_settings={"application_name": "places-of-safety-listener"},
                )
            except Exception as exc:  # any failure to connect is retried; the loop must live
                log.warning(
                    "event listener cannot connect",
                    dsn=hide_password(self._dsn),
                    error=type(exc).__name__,
                    retry_in=delay,
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX_SECONDS)
                continue
            was_connected = False
            try:
                await self._listen(conn)
            except Exception as exc:  # a lost connection (or a failed read) reconnects
                log.warning("event listener lost its connection", error=type(exc).__name__)
            finally:
                was_connected = self.connected
                if self.connected:
                    self.connected = False
                    self._advance()  # waiters switch to reading every FALLBACK_SECONDS
                if not conn.is_closed():
                    with contextlib.suppress(Exception):
                        await conn.close(timeout=2)
            # A connection that was up starts the backoff afresh; one that never came up
            # (LISTEN or the first read failed) keeps doubling it.
            delay = RETRY_FIRST_SECONDS if was_connected else min(delay * 2, RETRY_MAX_SECONDS)
            await asyncio.sleep(delay)

    async def _listen(self, conn: asyncpg.Connection[Any]) -> None:
        self._poke.clear()
        conn.add_termination_listener(self._on_terminated)
        await conn.add_listener(CHANNEL, self._on_notify)
        head, held_back = await _watch(conn)
        self.connected = True
        # Events may have committed while no one listened: every waiter reads again.
        self._advance()
        log.info("event listener connected", dsn=hide_password(self._dsn))
        pause = HELD_BACK_FIRST_SECONDS
        while True:
            idle = pause if held_back else IDLE_CHECK_SECONDS
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(idle):
                    await self._poke.wait()
            notified = self._poke.is_set()
            self._poke.clear()
            if conn.is_closed():
                raise _Lost
            newest, held_back = await _watch(conn)
            grew = newest != head
            if grew:
                head = newest
                self._advance()
            pause = (
                HELD_BACK_FIRST_SECONDS
                if notified or grew
                else min(pause * 2, HELD_BACK_MAX_SECONDS)
            )


async def _watch(conn: asyncpg.Connection[Any]) -> tuple[str | None, bool]:
    async with asyncio.timeout(QUERY_TIMEOUT_SECONDS):
        return await events.watch(conn)


async def event_listener(app: web.Application) -> AsyncIterator[None]:
    """cleanup_ctx (after the database's): the listener runs until the app stops."""
    listener = EventListener(app[keys.DSN])
    app[keys.EVENT_LISTENER] = listener
    task = asyncio.create_task(listener.run(), name="event-listener")
    try:
        yield
    finally:
        listener.release()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        log.info("event listener stopped")


async def release_waiters(app: web.Application) -> None:
    """on_shutdown: long polls answer now instead of holding the graceful stop."""
    listener = app.get(keys.EVENT_LISTENER)
    if listener is not None:
        listener.release()
