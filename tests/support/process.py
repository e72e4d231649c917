"""Running `python -m service` as an operator would, for tests of the process itself."""

from __future__ import annotations

import asyncio
import os
import socket
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from tests.support.until import until

ROOT = Path(__file__).resolve().parents[2]


# For load and fault tests: no hold cap or rate limit stands between their clients and the
# behaviour under test (the limits have tests of their own).
UNLIMITED = {
    "HOLD_CAP_PER_KEY": "10000",
    "HOLD_CAP_PER_FORCE": "100000",
    "BOOKING_CAP_PER_KEY": "10000",
    "BOOKING_CAP_PER_FORCE": "100000",
    "RATE_LIMIT_SEARCHES_PER_MINUTE": "0",
    "RATE_LIMIT_WRITES_PER_MINUTE": "0",
    "RATE_LIMIT_FEED_READS_PER_MINUTE": "0",
}


def pos_env(**extra: str) -> dict[str, str]:
    """This process's environment without service settings that would leak in, plus `extra`."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"DATABASE_URL", "ENVIRONMENT", "SEED_DEMO", "PORT"}
    }
    env.update({"LOG_FORMAT": "json", "SEED_DEMO": "false"})
    env.update(extra)
    return env


async def pos(*args: str, env: dict[str, str]) -> tuple[int, str, str]:
    """Run one `pos` command to completion: (exit code, stdout, stderr)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "service",
        *args,
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Server:
    proc: asyncio.subprocess.Process
    base: str
    port: int
    # With `drain`, everything the process writes, read as it comes (see `served`).
    output: bytearray = field(default_factory=bytearray)
    drained: asyncio.Task[None] | None = None

    async def exited(self) -> tuple[int, str]:
        """Wait for the process to end: (exit code, everything it wrote). Needs `drain`;
        bound it with asyncio.timeout."""
        assert self.drained is not None, "start the server with drain=True"
        code = await self.proc.wait()
        await self.drained
        return code, self.output.decode(errors="replace")


async def _drain(proc: asyncio.subprocess.Process, into: bytearray) -> None:
    """Read stdout and stderr as they come: a service under load logs more than a pipe holds,
    and a full pipe would stall it."""

    async def pump(stream: asyncio.StreamReader | None) -> None:
        assert stream is not None
        while chunk := await stream.read(65536):
            into.extend(chunk)

    await asyncio.gather(pump(proc.stdout), pump(proc.stderr))


@asynccontextmanager
async def served(
    env: dict[str, str], ready_within: float = 60, *, drain: bool = False
) -> AsyncIterator[Server]:
    """`pos serve` on a free port, yielded once /readyz answers 200; killed at the end if the
    test has not stopped it. With `drain`, its output is read as it comes into `output` (use
    `exited()` rather than `proc.communicate()`)."""
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "service",
        "serve",
        cwd=ROOT,
        env={**env, "PORT": str(port)},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"
    server = Server(proc, base, port)
    if drain:
        server.drained = asyncio.create_task(_drain(proc, server.output))
    try:
        async with aiohttp.ClientSession() as session:

            async def ready() -> bool:
                try:
                    async with session.get(f"{base}/readyz") as resp:
                        if resp.status == 200:
                            return True
                except aiohttp.ClientConnectionError:
                    pass
                assert proc.returncode is None, "the service exited before it was ready"
                return False

            await until(ready, ready_within, what="the service to become ready", every=0.1)
        yield server
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        if server.drained is not None:
            await server.drained
