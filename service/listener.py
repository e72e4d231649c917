"""The process's one LISTEN connection: long-polling feed readers wait here, not on the pool.

A dedicated asyncpg connection (never a pooled one) to the pool's database listens on
`pos_event` (sql/0010_feed_and_webhooks.sql: one notification per committed transaction that
wrote events). On each notification it reads the feed's horizon (the readable events are those
below it) and, when that moved, whose events became readable: each (type, force, provider)
once. Only the readers whose scope sees one of them are woken (issue 14 item 4: a write used to
wake every parked reader, and each read the feed again). A commit can also be held back behind
another transaction still running, and that one may end without notifying: while events are
held back the listener re-reads the horizon every 50 ms to 1 s.

It also listens on `pos_key_revoked` (sql/0016: one notification per key revoked, from any
replica): that key's parked readers are woken, read again and find the key refused.

If the connection drops, every waiter is woken, and until it is back (reconnecting with
backoff) each waits at most FALLBACK_SECONDS before reading again.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar
from uuid import UUID

import asyncpg
import structlog
from aiohttp import web

from service import keys
from service.db import hide_password
from service.domain.webhooks import Scope
from service.queries import events
from service.vocab import Role

log = structlog.get_logger(__name__)

CHANNEL = "pos_event"
REVOKED_CHANNEL = "pos_key_revoked"
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
# Changes remembered for readers that took a generation before reading: one that comes back
# after more changes than this reads again whatever they were.
CHANGES_KEPT = 256

Written = tuple[str, str | None, UUID | None]
T = TypeVar("T")


@dataclass(frozen=True)
class Change:
    """What moved the generation on: events that became readable (each (type, force, provider)
    once), a key revoked, or anything (reconnected, lost, stopping): every waiter reads."""

    written: frozenset[Written] = frozenset()
    revoked: UUID | None = None
    everything: bool = False


EVERYTHING = Change(everything=True)


@dataclass(frozen=True)
class Interest:
    """What a waiting reader reads: its key, its scope and (None: all) its event types."""

    key_id: UUID
    scope: Scope
    types: frozenset[str] | None = None

    def wants(self, change: Change) -> bool:
        if change.everything or change.revoked == self.key_id:
            return True
        return any(
            (self.types is None or type_ in self.types)
            and self.scope.sees(type_, force_code, provider_id)
            for type_, force_code, provider_id in change.written
        )


@dataclass(eq=False)
class _Waiter:
    interest: Interest
    woken: asyncio.Event = field(default_factory=asyncio.Event)


class SharedReads:
    """Reads in flight, by what they read: requests that ask for the same read while one is
    under way wait for it instead of reading again. A hundred polls of one force system,
    woken by the same write at the same cursor, cost one read, not a hundred.

    The key must name everything the result depends on, and the listener's generation when
    the read was asked for: a read shared within a generation began after every change up to
    it was published, so it sees what each sharer's own read would have seen.
    """

    def __init__(self) -> None:
        self._flights: dict[Hashable, asyncio.Future[Any]] = {}

    async def run(self, key: Hashable, read: Callable[[], Awaitable[T]]) -> tuple[T, bool]:
        """The read's result, and whether this caller made it (False: it shared another's)."""
        flight = self._flights.get(key)
        made = flight is None
        if flight is None:
            flight = asyncio.ensure_future(read())
            self._flights[key] = flight
            flight.add_done_callback(lambda _: self._flights.pop(key, None))
        # Shielded: a sharer going away does not cancel the read the others wait for.
        result: T = await asyncio.shield(flight)
        return result, made


class _Lost(Exception):
    """The LISTEN connection closed under us."""


class EventListener:
    """Tells waiting feed readers when the feed may have grown in their scope.

    A reader takes `generation` BEFORE it queries, and if it found nothing, awaits
    `wait(interest, generation_taken, seconds)`: a change it wants between its query and its
    wait is among the changes kept since that generation, so it is never missed.
    """

    def __init__(self, dsn: str) -> None:
        self._dsn = dsn
        self.generation = 0
        self.connected = False
        self.stopping = False
        # Requests waiting now, and waiters woken so far (for metrics and tests).
        self.waiting = 0
        self.woken = 0
        self._waiters: set[_Waiter] = set()
        # (generation, the change that made it), the newest last.
        self._changes: deque[tuple[int, Change]] = deque(maxlen=CHANGES_KEPT)
        self._poke = asyncio.Event()
        self._revoked: list[UUID] = []
        self.shared = SharedReads()

    def _publish(self, change: Change) -> None:
        """A new generation: wake the waiters that want it, and keep it for readers between
        their read and their wait."""
        self.generation += 1
        self._changes.append((self.generation, change))
        for waiter in self._waiters:
            if not waiter.woken.is_set() and waiter.interest.wants(change):
                waiter.woken.set()
                self.woken += 1

    def _advance(self) -> None:
        """Everyone reads again (connected, lost, stopping)."""
        self._publish(EVERYTHING)

    def release(self) -> None:
        """At shutdown: every waiter reads once more and answers, and none waits again."""
        self.stopping = True
        self._advance()

    def _missed(self, interest: Interest, seen: int) -> bool:
        """Whether a change since generation `seen` concerns `interest` (or is forgotten)."""
        if self.generation == seen:
            return False
        if not self._changes or self._changes[0][0] > seen + 1:
            return True
        return any(interest.wants(change) for gen, change in self._changes if gen > seen)

    async def wait(self, interest: Interest, seen: int, seconds: float) -> bool:
        """Until a change `interest` wants comes after generation `seen`, or `seconds` pass.

        True: read again (something may be there; or the listener is down and this was the
        fallback's second). False: the time ran out with nothing new.
        """
        if self.stopping or self._missed(interest, seen):
            return True
        fallback = not self.connected
        if fallback:
            seconds = min(seconds, FALLBACK_SECONDS)
        waiter = _Waiter(interest)
        self._waiters.add(waiter)
        self.waiting += 1
        try:
            async with asyncio.timeout(max(seconds, 0)):
                await waiter.woken.wait()
        except TimeoutError:
            return fallback
        finally:
            self._waiters.discard(waiter)
            self.waiting -= 1
        return True

    async def wait_any(self, seen: int, seconds: float) -> None:
        """For the webhook dispatcher (every scope is its business): until any change after
        generation `seen`, or `seconds` pass."""
        everyone = Interest(UUID(int=0), Scope(Role.ADMIN, None, None))
        await self.wait(everyone, seen, seconds)

    def _on_notify(self, *_: Any) -> None:
        self._poke.set()

    def _on_revoked(self, _conn: Any, _pid: int, _channel: str, payload: object) -> None:
        with contextlib.suppress(ValueError):
            self._revoked.append(UUID(str(payload)))
        self._poke.set()

    def _tell_revoked(self) -> None:
        revoked, self._revoked = self._revoked, []
        for key_id in revoked:
            self._publish(Change(revoked=key_id))

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
        await conn.add_listener(REVOKED_CHANNEL, self._on_revoked)
        horizon, held_back = await _watch(conn)
        self.connected = True
        # Events may have committed, or keys been revoked, while no one listened: every
        # waiter reads again.
        self._revoked.clear()
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
            self._tell_revoked()
            if conn.is_closed():
                raise _Lost
            newest, held_back = await _watch(conn)
            grew = False
            if newest != horizon:
                written = await _written(conn, horizon, newest)
                horizon = newest
                if written:
                    grew = True
                    self._publish(Change(written=frozenset(written)))
            pause = (
                HELD_BACK_FIRST_SECONDS
                if notified or grew
                else min(pause * 2, HELD_BACK_MAX_SECONDS)
            )


async def _watch(conn: asyncpg.Connection[Any]) -> tuple[str, bool]:
    async with asyncio.timeout(QUERY_TIMEOUT_SECONDS):
        return await events.watch(conn)


async def _written(conn: asyncpg.Connection[Any], since: str, until: str) -> Iterable[Written]:
    async with asyncio.timeout(QUERY_TIMEOUT_SECONDS):
        return await events.written(conn, since, until)


async def event_listener(app: web.Application) -> AsyncIterator[None]:
    """cleanup_ctx (after the database's): the listener runs until the app stops."""
    listener = EventListener(app[keys.DSN])
    app[keys.EVENT_LISTENER] = listener
    app[keys.METRICS].feed_waiting.set_function(lambda: listener.waiting)
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
