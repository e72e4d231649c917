"""SIGTERM's course: stop accepting, drain requests, let each job end its current batch, close
the pool; all within SHUTDOWN_TIMEOUT_SECONDS, cutting (and then exiting non-zero) whatever
would not end in time.

The budget, from the moment the stop begins (aiohttp's on_shutdown, right after the listening
sockets close): requests drain for REQUESTS_SHARE of it (aiohttp cancels handlers still running
then, and asyncpg cancels their server queries); jobs, asked to stop at the start, have until
POOL_RESERVE_SECONDS before the end, then are cancelled (their server query with them); the
pool has until EXIT_MARGIN_SECONDS before the end to see every connection back, then is
terminated (its sockets closed: the server rolls back what they had open). In `pos serve` a
last guard ends the process at the limit whatever the event loop is doing.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time

import structlog

log = structlog.get_logger(__name__)

REQUESTS_SHARE = 0.5
POOL_RESERVE_SECONDS = 3.0
EXIT_MARGIN_SECONDS = 0.5
# A cancelled job's query: the cancel request to the server and the rollback after it.
CANCEL_GRACE_SECONDS = 1.0
# The exit code of a stop that had to cut something.
CUT_EXIT_CODE = 1


class Shutdown:
    """The process's stop: asked for once (`begin`), with a deadline and a record of what had
    to be cut. `requested` is what jobs watch between batches."""

    def __init__(self, timeout_seconds: float) -> None:
        self.timeout_seconds = timeout_seconds
        self.requested = asyncio.Event()
        self.cut: list[str] = []
        # `pos serve` arms the last guard; in-process apps (tests) never exit the process.
        self.hard_exit = False
        self._deadline: float | None = None
        self._guard: threading.Timer | None = None

    def begin(self) -> None:
        if self._deadline is not None:
            return
        self._deadline = time.monotonic() + self.timeout_seconds
        self.requested.set()
        log.info("shutting down", within_seconds=self.timeout_seconds)
        if self.hard_exit:
            self._guard = threading.Timer(self.timeout_seconds, _exit_now)
            self._guard.daemon = True
            self._guard.start()

    def left(self, reserve: float = 0.0) -> float:
        """Seconds until the deadline less `reserve` (never below zero); the whole timeout
        while the stop has not begun."""
        if self._deadline is None:
            return max(0.0, self.timeout_seconds - reserve)
        return max(0.0, self._deadline - reserve - time.monotonic())

    def finish(self) -> None:
        """Everything is closed: the guard stands down."""
        if self._guard is not None:
            self._guard.cancel()
        if self.cut:
            log.warning("shutdown cut work short", cut=self.cut)


def _exit_now() -> None:
    # A thread of its own: runs even when the event loop is stuck. The server rolls back what
    # this process's connections had open once their sockets close with it.
    os.write(2, b'{"event": "shutdown limit reached: exiting now", "level": "error"}\n')
    os._exit(CUT_EXIT_CODE)


async def stop_task(task: asyncio.Task[None], name: str, shutdown: Shutdown) -> None:
    """Wait for a job's task to end after its current batch (it watches `requested`); at the
    job's share of the deadline cancel it (asyncpg cancels its server query), and record it as
    cut. Logs `<name> stopped`."""
    shutdown.begin()
    done, _ = await asyncio.wait({task}, timeout=shutdown.left(POOL_RESERVE_SECONDS))
    if not done:
        shutdown.cut.append(name)
        log.warning(f"{name} cut at the shutdown limit")
        task.cancel()
        done, _ = await asyncio.wait({task}, timeout=CANCEL_GRACE_SECONDS)
        if not done:
            log.error(f"{name} did not end when cancelled; its connection is terminated")
            return
    if not task.cancelled() and (error := task.exception()) is not None:
        log.error(f"{name} failed", exc_info=error)
    log.info(f"{name} stopped")
