"""Searches beside a herd of parked long polls (issue 14 item 4): search p99 at a fixed rate,
first alone, then with 1,000 long polls parked on `GET /v1/events?wait=` and a hold every 2 s.

The polls are what force systems do: officer keys (bench/run.py spreads them over every force,
five per key, LONG_POLLS_PER_KEY's default), each following its force's booking events (every
`booking.*` type) from the feed's end. The holds come from one force, so each write concerns
only that force's polls: those wake, answer and poll again at once from their new cursor; the
others must not be woken at all. The followers run in a child process, so their work does not
delay the open-loop client. The service's own counter of woken feed reads
(`pos_event_feed_reads_total{cause="woken"}`) is read before and after.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
import time
from typing import Any

import aiohttp

from bench.load import Request, open_loop

FEED_WAIT_S = 25
BOOKING_TYPES = ",".join(
    f"booking.{t}"
    for t in (
        "held", "pending", "confirmed", "declined", "cancelled", "expired", "arrived",
        "departed", "no_show", "extended",
    )
)  # fmt: skip


def _metric(text: str, name: str, labels: str = "") -> float:
    wanted = f"{name}{{{labels}}}" if labels else name
    for line in text.splitlines():
        if line.startswith(wanted + " "):
            return float(line.split()[-1])
    return 0.0


async def _metrics(http: aiohttp.ClientSession, base: str) -> str:
    async with http.get(base + "/metrics") as resp:
        return await resp.text()


async def _feed_end(http: aiohttp.ClientSession, base: str, key: str) -> str:
    """A cursor at the end of the key's feed: read on until a page comes back empty."""
    headers = {"Authorization": f"Bearer {key}"}
    params = {"limit": "500", "types": BOOKING_TYPES}
    while True:
        async with http.get(base + "/v1/events", params=params, headers=headers) as resp:
            body = await resp.json()
            if resp.status != 200:
                raise RuntimeError(f"feed read answered {resp.status}: {body}")
        params["after"] = body["next_cursor"]
        if not body["items"]:
            return str(body["next_cursor"])


async def measure(
    base: str,
    searches: list[Request],
    poll_keys: list[str],
    writes: list[Request],
    *,
    polls: int,
    rate: float,
    seconds: float,
    write_every: float,
) -> dict[str, Any]:
    result: dict[str, Any] = {
        "polls": polls,
        "poll_keys": len(poll_keys),
        "write_every_s": write_every,
        "search_rate": rate,
        "seconds": seconds,
    }
    result["without"] = await open_loop(base, searches, rate=rate, seconds=seconds, expect=200)

    async with aiohttp.ClientSession() as http:
        ends = [await _feed_end(http, base, key) for key in poll_keys]
        # The followers run in a process of their own: in this one their answers and re-polls
        # would hold up the open-loop client, whose latency runs from each scheduled send.
        spec = json.dumps({"base": base, "keys": poll_keys, "ends": ends, "polls": polls})
        child = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bench.herd",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        assert child.stdin is not None
        child.stdin.write(spec.encode() + b"\n")
        await child.stdin.drain()
        child.stdin.close()
        writer: asyncio.Task[None] | None = None
        statuses: dict[str, int] = {}
        try:
            deadline = time.monotonic() + 60
            while _metric(await _metrics(http, base), "pos_event_feed_waiting") < polls:
                if time.monotonic() > deadline or child.returncode is not None:
                    raise RuntimeError("the long polls did not all park within 60 s")
                await asyncio.sleep(0.2)
            before = await _metrics(http, base)

            async def write() -> None:
                for n in range(10_000):
                    await asyncio.sleep(write_every)
                    request = writes[n % len(writes)]
                    async with http.post(
                        base + request.path,
                        data=request.body,
                        headers={
                            "Authorization": f"Bearer {request.key}",
                            "Content-Type": "application/json",
                        },
                    ) as resp:
                        await resp.read()
                        statuses[str(resp.status)] = statuses.get(str(resp.status), 0) + 1

            writer = asyncio.create_task(write())
            result["with"] = await open_loop(base, searches, rate=rate, seconds=seconds, expect=200)
            writer.cancel()
            after = await _metrics(http, base)
            result["parked_at_end"] = _metric(after, "pos_event_feed_waiting")
        finally:
            if writer is not None:
                writer.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await writer
            if child.returncode is None:
                child.send_signal(signal.SIGTERM)
            out, _ = await child.communicate()
        result["poll_answers"] = json.loads(out or b"{}")

    woken = 'cause="woken"'
    result["writes"] = statuses
    result["woken_reads"] = _metric(after, "pos_event_feed_reads_total", woken) - _metric(
        before, "pos_event_feed_reads_total", woken
    )
    p99_with, p99_without = result["with"]["p99_ms"], result["without"]["p99_ms"]
    result["ratio"] = (
        round(p99_with / p99_without, 2) if p99_with is not None and p99_without else None
    )
    return result


async def _follow_all(spec: dict[str, Any]) -> dict[str, int]:
    """The followers: `polls` long polls spread over the keys, each following its key's
    booking events from its feed's end, until SIGTERM; how their answers went."""
    base, polls = spec["base"], spec["polls"]
    answers = {"events": 0, "empty": 0, "errors": 0}
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=FEED_WAIT_S + 30)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:

        async def follow(key: str, cursor: str) -> None:
            headers = {"Authorization": f"Bearer {key}"}
            while True:
                params = {"after": cursor, "wait": str(FEED_WAIT_S), "types": BOOKING_TYPES}
                try:
                    async with http.get(
                        base + "/v1/events", params=params, headers=headers
                    ) as resp:
                        body = await resp.json()
                except (aiohttp.ClientError, TimeoutError):
                    answers["errors"] += 1
                    continue
                if resp.status != 200:
                    answers["errors"] += 1
                    await asyncio.sleep(1)
                    continue
                answers["events" if body["items"] else "empty"] += 1
                cursor = body["next_cursor"]

        per_key = polls // len(spec["keys"])
        tasks = [
            asyncio.create_task(follow(key, end))
            for key, end in zip(spec["keys"], spec["ends"], strict=True)
            for _ in range(per_key)
        ]
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        await stop.wait()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return answers


if __name__ == "__main__":
    answered = asyncio.run(_follow_all(json.loads(sys.stdin.readline())))
    sys.stdout.write(json.dumps(answered) + "\n")
