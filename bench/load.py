"""Closed-loop HTTP load: wrk with a small Lua script, or the multi-process Python fallback.

Every run reports claims/s (200 responses: a task was handed out), 204s (the queue ran dry,
which a valid run never shows), other non-2xx responses, p50/p99 latency, and the CPU share
of the load generator, of the server under test and of the whole machine, so a reader can
tell which process was the bottleneck on a small machine.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from bench.cpu import CpuMeter, cores, machine_busy_seconds
from bench.pyload import build_request, drive

# Arguments after `--`: the Authorization header ("" for none) and the request body.
WRK_SCRIPT = """
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  wrk.method = "POST"
  wrk.body = args[2]
  wrk.headers["Content-Type"] = "application/json"
  if args[1] ~= "" then
    wrk.headers["Authorization"] = args[1]
  end
  ok, empty, other = 0, 0, 0
end

function response(status, headers, body)
  if status == 200 then
    ok = ok + 1
  elseif status >= 200 and status < 300 then
    empty = empty + 1
  else
    other = other + 1
  end
end

function done(summary, latency, requests)
  local total = {ok = 0, empty = 0, other = 0}
  for _, thread in ipairs(threads) do
    for key, _ in pairs(total) do
      total[key] = total[key] + thread:get(key)
    end
  end
  local e = summary.errors
  io.write(string.format(
    'BENCH_RESULT {"ok": %d, "empty": %d, "other": %d, "errors": %d, ' ..
    '"duration_us": %d, "p50_us": %d, "p99_us": %d}\\n',
    total.ok, total.empty, total.other, e.connect + e.read + e.write + e.timeout,
    summary.duration, latency:percentile(50), latency:percentile(99)))
end
"""
RESULT_PREFIX = "BENCH_RESULT "
SAMPLE_INTERVAL = 0.1


@dataclass(frozen=True)
class LoadTool:
    kind: str  # "wrk" or "python"
    path: str = ""

    def describe(self) -> str:
        if self.kind == "wrk":
            return f"wrk ({self.path})"
        return "Python fallback (keep-alive asyncio clients in up to 2 processes)"


@dataclass(frozen=True)
class LoadResult:
    tool: str
    connections: int
    seconds: float
    ok: int
    empty: int
    other: int
    errors: int
    p50_ms: float
    p99_ms: float
    loadgen_cpu: float
    server_cpu: float
    database_cpu: float
    machine_cpu: float

    @property
    def claims_per_second(self) -> float:
        return self.ok / self.seconds if self.seconds > 0 else 0.0

    @property
    def non_2xx(self) -> int:
        return self.other

    @property
    def server_ms_per_claim(self) -> float:
        """Server CPU per claim: unlike claims/s, barely moved by other load on the machine."""
        return self.server_cpu * cores() * self.seconds * 1000 / self.ok if self.ok else 0.0

    @property
    def other_cpu(self) -> float:
        """Share of the cores used by processes this run does not account for."""
        return max(0.0, self.machine_cpu - self.loadgen_cpu - self.server_cpu - self.database_cpu)


def _apt_install_wrk() -> bool:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for commands in ([], [["apt-get", "update"]]):
        for command in commands:
            subprocess.run(command, env=env, check=False, capture_output=True)
        print("wrk is missing; installing it: apt-get install -y wrk", flush=True)
        done = subprocess.run(["apt-get", "install", "-y", "wrk"], env=env, check=False)
        if done.returncode == 0 and shutil.which("wrk"):
            return True
    return False


def find_load_tool(preference: str) -> LoadTool:
    """wrk when present (installed with apt-get when missing), else the Python fallback."""
    if preference == "python":
        return LoadTool("python")
    path = shutil.which("wrk")
    if path is None and shutil.which("apt-get") and os.geteuid() == 0 and _apt_install_wrk():
        path = shutil.which("wrk")
    if path is not None:
        return LoadTool("wrk", path)
    if preference == "wrk":
        raise RuntimeError("wrk was asked for (BENCH_LOADGEN=wrk) but cannot be installed")
    print("wrk is not available; using the Python load generator", flush=True)
    return LoadTool("python")


@dataclass(frozen=True)
class Watched:
    """The processes whose CPU a run reports besides the load generator's.

    `database` is asked again during the run: a connection pool may open new backends.
    """

    server: list[int]
    database: Callable[[], list[int]]


@dataclass(frozen=True)
class CpuShares:
    loadgen: float
    server: float
    database: float
    machine: float


class _Watch:
    """Samples the CPU counters of the load generator, server and database during a run."""

    REFRESH_EVERY = 10  # samples between looks for new database backends

    def __init__(self, loadgen_pids: list[int], watched: Watched) -> None:
        self.loadgen = CpuMeter(list(loadgen_pids))
        self.server = CpuMeter(list(watched.server))
        self.database = CpuMeter(watched.database())
        self._database_pids = watched.database
        self._samples = 0
        self.loadgen.start(from_zero=True)
        self.server.start()
        self.database.start()
        self._busy, self._total = machine_busy_seconds()
        self._started = time.monotonic()

    def sample(self) -> None:
        self._samples += 1
        if self._samples % self.REFRESH_EVERY == 0:
            self.database.follow(self._database_pids())
        for meter in (self.loadgen, self.server, self.database):
            meter.sample()

    def finish(self) -> CpuShares:
        wall = time.monotonic() - self._started
        busy, total = machine_busy_seconds()
        machine = (busy - self._busy) / (total - self._total) if total > self._total else 0.0
        return CpuShares(
            self.loadgen.share(wall), self.server.share(wall), self.database.share(wall), machine
        )


async def _run_wrk(
    tool: LoadTool,
    url: str,
    authorization: str | None,
    body: str,
    connections: int,
    seconds: float,
    watched: Watched,
) -> LoadResult:
    threads = 2 if connections >= 16 and cores() > 1 else 1
    with tempfile.TemporaryDirectory(prefix="bench-wrk-") as tmp:
        script = Path(tmp) / "claim.lua"
        script.write_text(WRK_SCRIPT)
        process = await asyncio.create_subprocess_exec(
            tool.path,
            f"-t{threads}",
            f"-c{connections}",
            f"-d{max(1, round(seconds))}s",
            "--timeout",
            "10s",
            "--latency",
            "-s",
            str(script),
            url,
            "--",
            authorization or "",
            body,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        watch = _Watch([process.pid], watched)
        output = asyncio.ensure_future(process.communicate())
        try:
            while not output.done():
                watch.sample()
                await asyncio.wait({output}, timeout=SAMPLE_INTERVAL)
        finally:
            if process.returncode is None:  # interrupted: leave no wrk behind
                process.kill()
                await process.wait()
        stdout, stderr = output.result()
    cpu = watch.finish()
    lines = [line for line in stdout.decode().splitlines() if line.startswith(RESULT_PREFIX)]
    if process.returncode != 0 or not lines:
        raise RuntimeError(f"wrk failed ({process.returncode}): {stderr.decode()[-2000:]}")
    data = json.loads(lines[-1].removeprefix(RESULT_PREFIX))
    return LoadResult(
        tool="wrk",
        connections=connections,
        seconds=data["duration_us"] / 1e6,
        ok=data["ok"],
        empty=data["empty"],
        other=data["other"],
        errors=data["errors"],
        p50_ms=data["p50_us"] / 1000,
        p99_ms=data["p99_us"] / 1000,
        loadgen_cpu=cpu.loadgen,
        server_cpu=cpu.server,
        database_cpu=cpu.database,
        machine_cpu=cpu.machine,
    )


def _read_results(paths: list[str]) -> list[dict[str, Any]]:
    return [json.loads(Path(path).read_text()) for path in paths]


def _percentile(ordered: list[float], fraction: float) -> float:
    if not ordered:
        return 0.0
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


async def _run_python(
    url: str,
    authorization: str | None,
    body: str,
    connections: int,
    seconds: float,
    watched: Watched,
) -> LoadResult:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    request = build_request(host, port, parts.path, authorization, body)
    processes = max(1, min(2, cores(), connections))
    shares = [connections // processes + (i < connections % processes) for i in range(processes)]
    context = multiprocessing.get_context("spawn")
    with tempfile.TemporaryDirectory(prefix="bench-load-") as tmp:
        outs = [str(Path(tmp) / f"worker{i}.json") for i in range(processes)]
        workers = [
            context.Process(target=drive, args=(host, port, request, n, seconds, out))
            for n, out in zip(shares, outs, strict=True)
        ]
        for worker in workers:
            worker.start()
        watch = _Watch([w.pid for w in workers if w.pid is not None], watched)
        deadline = time.monotonic() + seconds + 60
        try:
            while any(w.is_alive() for w in workers) and time.monotonic() < deadline:
                watch.sample()
                await asyncio.sleep(SAMPLE_INTERVAL)
        finally:
            for worker in workers:
                if worker.is_alive():  # interrupted or hung: leave no process behind
                    worker.kill()
                    worker.join()
        if any(w.exitcode != 0 for w in workers):
            raise RuntimeError("a Python load generator process failed")
        results = _read_results(outs)
    cpu = watch.finish()
    latencies = sorted(lat for r in results for lat in r["latencies"])
    return LoadResult(
        tool="python",
        connections=connections,
        seconds=max(r["seconds"] for r in results),
        ok=sum(r["ok"] for r in results),
        empty=sum(r["empty"] for r in results),
        other=sum(r["other"] for r in results),
        errors=sum(r["errors"] for r in results),
        p50_ms=_percentile(latencies, 0.50) * 1000,
        p99_ms=_percentile(latencies, 0.99) * 1000,
        loadgen_cpu=cpu.loadgen,
        server_cpu=cpu.server,
        database_cpu=cpu.database,
        machine_cpu=cpu.machine,
    )


async def run_load(
    tool: LoadTool,
    url: str,
    *,
    authorization: str | None,
    connections: int,
    seconds: float,
    watched: Watched,
    body: str = "{}",
) -> LoadResult:
    """POST `body` to `url` over `connections` keep-alive connections for `seconds`."""
    if tool.kind == "wrk":
        return await _run_wrk(tool, url, authorization, body, connections, seconds, watched)
    return await _run_python(url, authorization, body, connections, seconds, watched)
