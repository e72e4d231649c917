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
    # With `drain`, everything the process writes, read as it comes (see `served`); without,
    # what it wrote to stderr before it listened.
    output: bytearray = field(default_factory=bytearray)
    # What it printed on stdout before listening (the demo keys).
    banner: str = ""
    drained: asyncio.Task[None] | None = None

    async def exited(self) -> tuple[int, str]:
        """Wait for the process to end: (exit code, everything it wrote). Needs `drain`;
        bound it with asyncio.timeout."""
        assert self.drained is not None, "start the server with drain=True"
        code = await self.proc.wait()
        await self.drained
        return code, self.output.decode(errors="replace")


async def _listening(proc: asyncio.subprocess.Process, server: Server) -> str:
    """Read stdout up to the "Listening on <url>" line (keeping what came before it, such as
    the demo keys, in `server.banner`); the url."""
    assert proc.stdout is not None and proc.stderr is not None
    stderr = proc.stderr
    # stderr is read meanwhile so a chatty start cannot fill its pipe and stall the process.
    early_logs = asyncio.create_task(_pump(stderr, server.output))
    try:
        while line := (await proc.stdout.readline()).decode():
            if line.startswith("Listening on "):
                return line.split()[2]
            server.banner += line
    finally:
        early_logs.cancel()
    raise AssertionError(f"the service exited before listening: {server.output.decode()}")


async def _pump(stream: asyncio.StreamReader, into: bytearray) -> None:
    while chunk := await stream.read(65536):
        into.extend(chunk)


async def _drain(proc: asyncio.subprocess.Process, into: bytearray) -> None:
    """Read stdout and stderr as they come: a service under load logs more than a pipe holds,
    and a full pipe would stall it."""
    assert proc.stdout is not None and proc.stderr is not None
    await asyncio.gather(_pump(proc.stdout, into), _pump(proc.stderr, into))


@asynccontextmanager
async def served(
    env: dict[str, str], ready_within: float = 60, *, drain: bool = False
) -> AsyncIterator[Server]:
    """`pos serve` on a port of its own, yielded once /readyz answers 200; killed at the end if
    the test has not stopped it. With `drain`, its output is read as it comes into `output`
    (use `exited()` rather than `proc.communicate()`).

    The process binds port 0 and the test reads the port it took from its "Listening on"
    line: a port picked here and released could be taken meanwhile by another worker's server,
    whose /readyz would then answer for this one (seen once in CI)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "service",
        "serve",
        cwd=ROOT,
        env={**env, "PORT": "0"},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    server = Server(proc, "", 0)
    try:
        async with asyncio.timeout(ready_within):
            server.base = await _listening(proc, server)
        server.port = int(server.base.rsplit(":", 1)[1])
        if drain:
            server.drained = asyncio.create_task(_drain(proc, server.output))
        async with aiohttp.ClientSession() as session:

            async def ready() -> bool:
                try:
                    async with session.get(f"{server.base}/readyz") as resp:
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
