"""`python -m bench.callbacks`: tasks marked done through the API -> callbacks received.

Two modes: with RabbitMQ (`taskmanager serve --workers 2` + one `taskmanager worker`, on
PostgreSQL) and embedded (one `taskmanager serve`, SQLite, no broker). In each, one phase
after the other, each on BENCH_CALLBACK_TASKS (10,000) fresh tasks whose `callback_url` is
a local receiver (bench/receiver.py, a process of its own):

- paced: the done requests (`PUT /api/v1/tasks/{id}` with `{"status": "done"}`) are sent at
  a fixed offered rate, BENCH_CALLBACK_RATE (550/s), open loop: every request has its send
  time on a fixed schedule, whenever the answer to the one before came (wrk's Lua `delay()`,
  64 connections). The load a busy deployment sees; the latency is the pipeline's own.
- flat out: as many done requests as BENCH_CALLBACK_CLIENTS (32) wrk connections get
  answered, each sent when the one before was answered (closed loop). On 2 cores the API,
  PostgreSQL and RabbitMQ take what the worker needs, so callbacks fall behind and latency
  measures the queue that builds up.
- backlog (with the broker): the worker is stopped, the tasks are marked done flat out, and
  a worker started again drains them (worker start included).

Each phase waits until every callback arrived, then prints: the offered rate (paced only);
the achieved API done rate (done events / the span of their `occurred_at`); end-to-end
callbacks/s (first done request, or the worker's start for the backlog, to the last
callback); event-to-receipt latency p50/p99 (the event's `occurred_at`, stamped in the
committing transaction, to the receiver's clock; the backlog's is the wait while the worker
was down, so it is left out); and CPU per callback of the process that delivers (the
`taskmanager worker` with the broker; embedded, the `serve` process, API included), from
/proc. Last, a summary table with the targets (with the broker: >= 500 callbacks/s and p99
< 1 s while done requests come at BENCH_CALLBACK_RATE) and whether each is met. Figures
only; nothing is asserted. BENCH_CALLBACK_MODES (broker,embedded) and BENCH_CALLBACK_PHASES
(paced,flat out,backlog) choose what runs, for a quicker look at one part.
"""

from __future__ import annotations

import asyncio
import base64
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from bench import seed
from bench.cpu import core_speed_ms, cores, cpu_seconds, machine_busy_seconds
from bench.report import Row, say, speed_note, table
from bench.server import BIN, ROOT, Server, _clean_environ, _running

TASKS = int(os.environ.get("BENCH_CALLBACK_TASKS", "10000"))
CLIENTS = int(os.environ.get("BENCH_CALLBACK_CLIENTS", "32"))
RATE = float(os.environ.get("BENCH_CALLBACK_RATE", "550"))
WARMUP = int(os.environ.get("BENCH_CALLBACK_WARMUP", "1000"))
# Which modes and phases run (all by default): for a quicker look at one of them.
MODES = os.environ.get("BENCH_CALLBACK_MODES", "broker,embedded").split(",")
PHASES = os.environ.get("BENCH_CALLBACK_PHASES", "paced,flat out,backlog").split(",")
PACED_CONNECTIONS = 64
AMQP = os.environ.get("BENCH_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
WRK_THREADS = 2
TARGET_RATE = 500.0
TARGET_P99_MS = 1000.0


@dataclass(frozen=True)
class Phase:
    """What one phase measured."""

    label: str
    expected: int
    arrived: int
    repeats: int
    seconds: float  # first done request (or the worker's start) to the last callback
    done_rate: float | None
    offered: float | None
    p50_ms: float | None
    p99_ms: float | None
    cpu_seconds: float | None
    cpu_of: str
    api_cpu_seconds: float | None = None  # the API processes, when they do not deliver
    machine_busy: float | None = None  # share of all cores busy, whatever ran

    @property
    def callbacks_per_second(self) -> float:
        return self.arrived / self.seconds if self.seconds > 0 else 0.0

    @property
    def cpu_ms_per_callback(self) -> float | None:
        if self.cpu_seconds is None or not self.arrived:
            return None
        return self.cpu_seconds * 1000 / self.arrived

    def line(self) -> str:
        parts = []
        if self.offered is not None:
            parts.append(f"offered {self.offered:,.0f} done/s")
        if self.done_rate is not None:
            parts.append(f"API done rate {self.done_rate:,.0f}/s")
        parts.append(
            f"{self.arrived:,}/{self.expected:,} callbacks ({self.repeats} repeats) in "
            f"{self.seconds:.1f} s = {self.callbacks_per_second:,.0f} callbacks/s end to end"
        )
        if self.p50_ms is not None and self.p99_ms is not None:
            parts.append(
                f"event-to-receipt latency p50 {self.p50_ms:,.0f} ms, p99 {self.p99_ms:,.0f} ms"
            )
        per = self.cpu_ms_per_callback
        if per is not None and self.cpu_seconds is not None:
            parts.append(
                f"{self.cpu_of} CPU {per:.2f} ms per callback "
                f"({self.cpu_seconds / self.seconds * 100:.0f}% of a core)"
            )
        if self.api_cpu_seconds is not None and self.expected:
            parts.append(
                f"API CPU {self.api_cpu_seconds * 1000 / self.expected:.2f} ms per done request"
            )
        if self.machine_busy is not None:
            parts.append(f"machine busy {self.machine_busy * 100:.0f}% of {cores()} cores")
        return f"  {self.label}: " + "; ".join(parts)


@asynccontextmanager
async def receiver(workdir: Path) -> AsyncIterator[Server]:
    command = [
        str(BIN / "python"),
        "-m",
        "uvicorn",
        "bench.receiver:app",
        "--host",
        "127.0.0.1",
        "--log-level",
        "warning",
        "--no-access-log",
    ]
    env = {**_clean_environ(), "PYTHONPATH": str(ROOT)}
    async with _running("receiver", command, env, workdir, ("/stats", 200)) as server:
        yield server


class Receipts:
    """The receiver's receipts, fetched as they come (only the new ones each time)."""

    def __init__(self, server: Server) -> None:
        self.client = httpx.AsyncClient(base_url=server.base_url, timeout=30)
        self.all: list[tuple[str, int, float]] = []

    async def fetch(self) -> None:
        response = await self.client.get("/stats", params={"since": len(self.all)})
        self.all += [(str(i), int(n), float(t)) for i, n, t in response.json()]

    def of(self, first: int, count: int) -> list[tuple[str, float]]:
        """(event id, time) of the callbacks to tasks numbered first .. first + count - 1."""
        return [(i, t) for i, n, t in self.all if first <= n < first + count]

    async def wait_for(
        self, first: int, count: int, within: float = 600
    ) -> list[tuple[str, float]]:
        deadline = time.monotonic() + within
        while True:
            await self.fetch()
            got = self.of(first, count)
            if len({i for i, _ in got}) >= count or time.monotonic() > deadline:
                return got
            await asyncio.sleep(0.25)

    async def aclose(self) -> None:
        await self.client.aclose()


@asynccontextmanager
async def process(
    name: str, args: list[str], env: dict[str, str], workdir: Path
) -> AsyncIterator[subprocess.Popen[bytes]]:
    with (workdir / f"{name}.log").open("wb") as log:
        proc = subprocess.Popen(  # noqa: ASYNC220 (returns at once; the process runs on)
            [str(BIN / "taskmanager"), *args],
            cwd=workdir,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()


def rabbit_vhost() -> tuple[str, str]:
    name = f"tm_bench_{uuid.uuid4().hex[:8]}"
    for args in (["add_vhost", name], ["set_permissions", "-p", name, "guest", ".*", ".*", ".*"]):
        subprocess.run(["rabbitmqctl", "-q", *args], check=True, capture_output=True)
    return name, AMQP.rstrip("/") + "/" + name


async def create_tasks(
    api: httpx.AsyncClient, receiver_url: str, start: int, count: int = TASKS
) -> list[int]:
    ids: list[int] = []
    for first in range(start, start + count, 5000):
        items = [
            {
                "template": "bench",
                "content": {"n": n},
                "users": ["admin"],
                "callback_url": f"{receiver_url}/cb/{n}",
                "callback_content": f'{{"n": {n}}}',
            }
            for n in range(first, min(first + 5000, start + count))
        ]
        r = await api.post("/api/v1/tasks/bulk", json={"tasks": items})
        r.raise_for_status()
        ids += [int(uri.rsplit("/", 1)[1]) for uri in r.json()["tasks"]]
    return ids


# wrk marks a contiguous id range done: thread t of n takes first+t-1, first+t-1+n, ...
# With a rate, every request has its slot on a fixed schedule (the thread's share of the
# rate); delay() waits for the next free slot, or not at all when the slot has passed (the
# server fell behind), so the offered rate does not depend on how fast answers come.
WRK_DONE = """
local ffi = require("ffi")
ffi.cdef[[
typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
int clock_gettime(int clock, bench_timespec *now);
]]
local timespec = ffi.new("bench_timespec")
local function now_ms()
  ffi.C.clock_gettime(1, timespec)  -- CLOCK_MONOTONIC
  return tonumber(timespec.tv_sec) * 1000 + tonumber(timespec.tv_nsec) / 1e6
end

local counter = 1
function setup(thread)
  thread:set("tid", counter)
  counter = counter + 1
end

function init(args)
  first, last, step = tonumber(args[1]), tonumber(args[2]), tonumber(args[3])
  rate = tonumber(args[5])
  wrk.method = "PUT"
  wrk.body = '{"status": "done"}'
  wrk.headers["Content-Type"] = "application/json"
  wrk.headers["Authorization"] = args[4]
  nextid = first + tid - 1
  if rate > 0 then
    interval = step * 1000 / rate
    slot = now_ms() + (tid - 1) * interval / step
  end
end

function delay()
  if rate <= 0 then
    return 0
  end
  local now = now_ms()
  local at = slot
  slot = slot + interval
  if at <= now then
    return 0
  end
  return math.floor(at - now)
end

function request()
  if not started then
    -- wrk may spend a thread's first request() without sending it: no id on it.
    started = true
    return wrk.format("GET", "/-/healthy")
  end
  local id = nextid
  nextid = nextid + step
  if id > last then
    return wrk.format("GET", "/-/healthy")
  end
  return wrk.format(nil, "/api/v1/tasks/" .. id)
end

"""


async def not_done_count(engine: AsyncEngine, ids: list[int]) -> int:
    async with engine.connect() as conn:
        return int(
            (
                await conn.execute(
                    text(
                        "SELECT count(*) FROM tasks WHERE status <> 'done' AND id BETWEEN :a AND :b"
                    ),
                    {"a": ids[0], "b": ids[-1]},
                )
            ).scalar_one()
        )


async def not_done(engine: AsyncEngine, ids: list[int]) -> list[int]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            text("SELECT id FROM tasks WHERE status <> 'done' AND id BETWEEN :a AND :b"),
            {"a": ids[0], "b": ids[-1]},
        )
        return [int(row[0]) for row in rows]


async def mark_done_wrk(
    base_url: str,
    authorization: str,
    engine: AsyncEngine,
    ids: list[int],
    workdir: Path,
    rate: float | None,
) -> None:
    """The ids done through wrk (a light load generator), stopped once the database shows
    no more progress (after the last id, wrk's threads only ask /-/healthy)."""
    script = workdir / "done.lua"
    script.write_text(WRK_DONE)
    connections = PACED_CONNECTIONS if rate else CLIENTS
    process = await asyncio.create_subprocess_exec(
        "wrk",
        f"-t{WRK_THREADS}",
        f"-c{connections}",
        "-d600s",
        "-s",
        str(script),
        base_url,
        "--",
        str(ids[0]),
        str(ids[-1]),
        str(WRK_THREADS),
        authorization,
        str(rate or 0),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    # A request wrk gave up on (its timeout) may not have reached the server: once the
    # count stops falling, the caller sends the rest itself.
    try:
        left, since = len(ids), time.perf_counter()
        while process.returncode is None and left:
            await asyncio.sleep(0.5)
            now_left = await not_done_count(engine, ids)
            if now_left < left:
                left, since = now_left, time.perf_counter()
            elif left < len(ids) and time.perf_counter() - since > 1.5:
                break
    finally:
        if process.returncode is None:
            process.terminate()
        await process.wait()


async def mark_done(api: httpx.AsyncClient, ids: list[int], rate: float | None) -> None:
    """Python clients: CLIENTS in a closed loop, or paced at `rate` (open loop)."""
    if rate:
        slots = asyncio.Semaphore(PACED_CONNECTIONS)
        started = time.perf_counter()

        async def one(task_id: int) -> None:
            async with slots:
                (
                    await api.put(f"/api/v1/tasks/{task_id}", json={"status": "done"})
                ).raise_for_status()

        pending = []
        for n, task_id in enumerate(ids):
            await asyncio.sleep(max(0.0, started + n / rate - time.perf_counter()))
            pending.append(asyncio.create_task(one(task_id)))
        await asyncio.gather(*pending)
        return
    queue = list(reversed(ids))

    async def client() -> None:
        while queue:
            task_id = queue.pop()
            (await api.put(f"/api/v1/tasks/{task_id}", json={"status": "done"})).raise_for_status()

    await asyncio.gather(*(client() for _ in range(CLIENTS)))


async def set_all_done(
    api: httpx.AsyncClient,
    authorization: str,
    engine: AsyncEngine,
    ids: list[int],
    workdir: Path,
    rate: float | None = None,
) -> str:
    """Mark every id done; returns what sent the requests."""
    contiguous = ids == list(range(ids[0], ids[0] + len(ids)))
    if shutil.which("wrk") and contiguous:
        base_url = str(api.base_url).rstrip("/")
        await mark_done_wrk(base_url, authorization, engine, ids, workdir, rate)
        left = await not_done(engine, ids)
        if left:
            await mark_done(api, left, None)
        connections = PACED_CONNECTIONS if rate else CLIENTS
        return f"wrk, {connections} connections"
    await mark_done(api, ids, rate)
    return f"Python httpx, {PACED_CONNECTIONS if rate else CLIENTS} clients"


async def settle(engine: AsyncEngine, vhost: str | None, within: float = 300) -> None:
    """Wait until every event so far is relayed (the outbox) and, with the broker, consumed
    (the vhost's queues are empty): the `task.created` events of the tasks just made must
    not stand in the way of the phase's own."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        async with engine.connect() as conn:
            unpublished = (
                await conn.execute(
                    text("SELECT count(*) FROM outbox_events WHERE published_at IS NULL")
                )
            ).scalar_one()
        queued = 0
        if vhost is not None and not unpublished:
            listing = await asyncio.create_subprocess_exec(
                "rabbitmqctl",
                "-q",
                "list_queues",
                "-p",
                vhost,
                "messages",
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.DEVNULL,
            )
            out, _ = await listing.communicate()
            queued = sum(int(word) for word in out.split() if word.isdigit())
        if not unpublished and not queued:
            return
        await asyncio.sleep(0.5)


def _utc(value: datetime | str) -> datetime:
    # SQLite hands a plain query's timestamps back as text.
    at = datetime.fromisoformat(value) if isinstance(value, str) else value
    return at.replace(tzinfo=UTC)


async def done_events(engine: AsyncEngine, ids: list[int]) -> dict[str, float]:
    """event id -> occurred_at (unix time) of the tasks' done events."""
    async with engine.connect() as conn:
        rows = await conn.execute(
            text(
                "SELECT event_id, occurred_at FROM outbox_events "
                "WHERE type = 'task.status.done' AND task_id BETWEEN :a AND :b"
            ),
            {"a": ids[0], "b": ids[-1]},
        )
        return {event_id: _utc(at).timestamp() for event_id, at in rows}


def measure(
    label: str,
    started: float,
    got: list[tuple[str, float]],
    events: dict[str, float],
    *,
    offered: float | None,
    cpu: float | None,
    cpu_of: str,
    latency: bool = True,
) -> Phase:
    first_by_id: dict[str, float] = {}
    for event_id, at in got:
        first_by_id.setdefault(event_id, at)
    arrived = len(first_by_id)
    seconds = (max(first_by_id.values()) - started) if first_by_id else 0.0
    latencies = sorted((at - events[i]) * 1000 for i, at in first_by_id.items() if i in events)
    p50 = p99 = None
    if latency and latencies:
        p50 = statistics.median(latencies)
        p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
    done_rate = None
    if len(events) > 1:
        span = max(events.values()) - min(events.values())
        done_rate = (len(events) - 1) / span if span > 0 else None
    return Phase(
        label=label,
        expected=len(events) or TASKS,
        arrived=arrived,
        repeats=len(got) - arrived,
        seconds=seconds,
        done_rate=done_rate,
        offered=offered,
        p50_ms=p50,
        p99_ms=p99,
        cpu_seconds=cpu,
        cpu_of=cpu_of,
    )


def cpu_of(pids: Callable[[], list[int]]) -> float | None:
    seconds = [cpu_seconds(pid) for pid in pids()]
    known = [s for s in seconds if s is not None]
    return sum(known) if known else None


def _busy_since(before: tuple[float, float]) -> float | None:
    busy, total = machine_busy_seconds()
    return (busy - before[0]) / (total - before[1]) if total > before[1] else None


def _minus(after: float | None, before: float | None) -> float | None:
    return after - before if after is not None and before is not None else None


async def run_mode(broker: bool, workdir: Path, results: dict[str, Phase]) -> None:
    async with AsyncExitStack() as stack:
        backend = "postgresql" if broker else "sqlite"
        db = seed.database_for(backend, f"tm_cb_{os.getpid()}_{int(broker)}", workdir)
        await seed.create(db)
        stack.push_async_callback(seed.drop, db)
        engine = create_async_engine(db.url)
        stack.push_async_callback(engine.dispose)
        password = secrets.token_urlsafe(16)
        basic = "Basic " + base64.b64encode(f"admin:{password}".encode()).decode()
        env = {
            **_clean_environ(),
            "TASKMAN_DATABASE_URL": db.url,
            "TASKMAN_SECRET_KEY": secrets.token_urlsafe(32),
            "TASKMAN_ADMIN_PASSWORD": password,
            "TASKMAN_LOG_LEVEL": "WARNING",
            "TASKMAN_DATA_DIR": str(workdir / "data"),
        }
        vhost: str | None = None
        if broker:
            vhost, url = rabbit_vhost()
            stack.callback(
                subprocess.run,
                ["rabbitmqctl", "-q", "delete_vhost", vhost],
                check=False,
                capture_output=True,
            )
            env["TASKMAN_AMQP_URL"] = url
        workers = "2" if broker else "1"
        command = [str(BIN / "taskmanager"), "serve", "--host", "127.0.0.1", "--workers", workers]
        api_server = await stack.enter_async_context(
            _running("api", command, env, workdir, ("/-/ready", 200))
        )
        rx = await stack.enter_async_context(receiver(workdir))
        receipts = Receipts(rx)
        stack.push_async_callback(receipts.aclose)
        api = await stack.enter_async_context(
            httpx.AsyncClient(base_url=api_server.base_url, auth=("admin", password), timeout=120)
        )
        (
            await api.post("/api/v1/task_templates", json={"label": "bench", "content": "a: 1"})
        ).raise_for_status()
        mode = (
            f"with RabbitMQ ({workers} API processes + 1 worker, PostgreSQL)"
            if broker
            else "embedded (1 process, SQLite, no broker)"
        )
        key = "broker" if broker else "embedded"
        say(f"{mode}:")
        if broker:
            worker = await stack.enter_async_context(process("worker", ["worker"], env, workdir))
            await asyncio.sleep(2)
            delivering, who = (lambda: [worker.pid]), "worker"
        else:
            delivering, who = api_server.pids, "serve (API + delivery)"
        first = 0
        if WARMUP:
            # Uncounted: the API's and the worker's connections are opened, code paths warm.
            ids = await create_tasks(api, rx.base_url, first, WARMUP)
            await settle(engine, vhost)
            await set_all_done(api, basic, engine, ids, workdir, RATE)
            await receipts.wait_for(first, WARMUP)
            first += WARMUP
        for name, rate in (("paced", RATE), ("flat out", None)):
            if name not in PHASES:
                continue
            ids = await create_tasks(api, rx.base_url, first)
            await settle(engine, vhost)
            cpu_before = cpu_of(delivering)
            api_before = cpu_of(api_server.pids) if broker else None
            busy_before = machine_busy_seconds()
            started = time.time()
            loadgen = await set_all_done(api, basic, engine, ids, workdir, rate)
            got = await receipts.wait_for(first, TASKS)
            busy = _busy_since(busy_before)
            phase = measure(
                f"{name} ({loadgen})",
                started,
                got,
                await done_events(engine, ids),
                offered=rate,
                cpu=_minus(cpu_of(delivering), cpu_before),
                cpu_of=who,
            )
            phase = replace(
                phase,
                api_cpu_seconds=_minus(cpu_of(api_server.pids), api_before),
                machine_busy=busy,
            )
            results[f"{key}.{name}"] = phase
            say(phase.line() + speed_note(core_speed_ms(), "phase"))
            first += TASKS
        if broker and "backlog" in PHASES:
            ids = await create_tasks(api, rx.base_url, first)
            await settle(engine, vhost)
            worker.terminate()
            worker.wait(30)
            await set_all_done(api, basic, engine, ids, workdir)
            busy_before = machine_busy_seconds()
            async with process("worker2", ["worker"], env, workdir) as worker2:
                started = time.time()
                got = await receipts.wait_for(first, TASKS)
                busy = _busy_since(busy_before)
                cpu = cpu_seconds(worker2.pid)
                phase = measure(
                    f"backlog ({TASKS:,} callbacks queued while the worker was down, "
                    "drained by a worker started after; its start included)",
                    started,
                    got,
                    await done_events(engine, ids),
                    offered=None,
                    cpu=cpu,
                    cpu_of="worker",
                    latency=False,
                )
                # Its done requests came before the worker started: their rate says nothing.
                results["broker.backlog"] = replace(phase, done_rate=None, machine_busy=busy)
                say(results["broker.backlog"].line() + speed_note(core_speed_ms(), "phase"))


def summary(results: dict[str, Phase]) -> list[Row]:
    def get(key: str, figure: Callable[[Phase], float | None]) -> float | None:
        return figure(results[key]) if key in results else None

    rows = [
        Row(
            f"broker, paced at {RATE:,.0f} done/s: callbacks/s end to end",
            get("broker.paced", lambda p: p.callbacks_per_second),
            "/s",
            f">= {TARGET_RATE:,.0f}",
            lambda v: v >= TARGET_RATE,
        ),
        Row(
            f"broker, paced at {RATE:,.0f} done/s: event-to-receipt p99",
            get("broker.paced", lambda p: p.p99_ms),
            "ms",
            f"< {TARGET_P99_MS:,.0f} ms",
            lambda v: v < TARGET_P99_MS,
        ),
        Row(
            "broker, paced: event-to-receipt p50",
            get("broker.paced", lambda p: p.p50_ms),
            "ms",
        ),
        Row("broker, paced: API done rate", get("broker.paced", lambda p: p.done_rate), "/s"),
        Row(
            "broker, paced: worker CPU per callback",
            get("broker.paced", lambda p: p.cpu_ms_per_callback),
            "ms",
        ),
        Row(
            "broker, flat out: callbacks/s end to end",
            get("broker.flat out", lambda p: p.callbacks_per_second),
            "/s",
        ),
        Row("broker, flat out: API done rate", get("broker.flat out", lambda p: p.done_rate), "/s"),
        Row(
            "broker, flat out: event-to-receipt p99",
            get("broker.flat out", lambda p: p.p99_ms),
            "ms",
        ),
        Row(
            "broker, flat out: worker CPU per callback",
            get("broker.flat out", lambda p: p.cpu_ms_per_callback),
            "ms",
        ),
        Row(
            "broker, backlog drain",
            get("broker.backlog", lambda p: p.callbacks_per_second),
            "/s",
        ),
        Row(
            "broker, backlog: worker CPU per callback",
            get("broker.backlog", lambda p: p.cpu_ms_per_callback),
            "ms",
        ),
        Row(
            "embedded, paced: callbacks/s end to end",
            get("embedded.paced", lambda p: p.callbacks_per_second),
            "/s",
        ),
        Row(
            "embedded, paced: event-to-receipt p99", get("embedded.paced", lambda p: p.p99_ms), "ms"
        ),
        Row(
            "embedded, flat out: callbacks/s end to end",
            get("embedded.flat out", lambda p: p.callbacks_per_second),
            "/s",
        ),
        Row(
            "embedded, flat out: event-to-receipt p99",
            get("embedded.flat out", lambda p: p.p99_ms),
            "ms",
        ),
    ]
    lost = [p for p in results.values() if p.arrived < p.expected]
    rows.append(
        Row(
            "callbacks missing, all phases",
            float(sum(p.expected - p.arrived for p in lost)) if results else None,
            "n",
            "0",
            lambda v: v == 0,
        )
    )
    return rows


def main() -> int:
    say(
        f"delivery benchmark: {TASKS:,} tasks per phase; paced at {RATE:,.0f} done requests/s "
        f"({PACED_CONNECTIONS} connections), then flat out ({CLIENTS} connections); targets "
        f"with the broker, paced: >= {TARGET_RATE:,.0f} callbacks/s, "
        f"p99 < {TARGET_P99_MS:,.0f} ms; core speed {core_speed_ms():.0f} ms for a fixed "
        "Python loop (lower is faster)"
    )
    results: dict[str, Phase] = {}
    failed = False
    with tempfile.TemporaryDirectory(prefix="tm-cb-") as tmp:
        for broker in (True, False):
            if ("broker" if broker else "embedded") not in MODES:
                continue
            try:
                asyncio.run(run_mode(broker, Path(tmp), results))
            except Exception as exc:
                say(f"  FAILED: {exc!r}")
                failed = True
    say("\nSummary (targets are for reading; nothing here fails the run)")
    say(table(summary(results)))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
