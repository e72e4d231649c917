"""Waiting for state in tests: poll a check until it holds, failing at a deadline.

State decides, never a sleep: the check is read again every `every` seconds and the wait ends
the moment it holds, so a quick machine waits a few milliseconds and a loaded one (two cores,
a suite on each) has the whole `within` before the test fails.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


async def until(
    check: Callable[[], Awaitable[T] | T],
    within: float = 10,
    *,
    what: str = "the condition",
    every: float = 0.01,
) -> T:
    """Call `check` (plain or async) until it returns something truthy; return that.

    Fails with "timed out waiting for <what>" once `within` seconds have passed; an exception
    or failed assert inside `check` ends the wait at once (a process that died, say).
    """
    deadline = time.monotonic() + within
    while True:
        result = check()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return result  # type: ignore[return-value]
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {within} s waiting for {what}")
        await asyncio.sleep(every)
