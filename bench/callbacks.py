"""`python -m bench.callbacks`: tasks marked done through the API -> callbacks received.

For each mode (with RabbitMQ: `taskmanager serve` + `taskmanager worker` on PostgreSQL; the
embedded mode: `taskmanager serve` alone on SQLite, no broker):
1. bulk-create BENCH_CALLBACK_TASKS (10,000) tasks whose callback_url is a local receiver;
2. PUT status done on all of them from BENCH_CALLBACK_CLIENTS (32) concurrent clients;
3. wait until every callback arrived, and print end-to-end callbacks/s (first done request
   to last callback), the API's done rate, and event-to-receipt latency p50/p99 (the event's
   occurred_at, stamped in the committing transaction, to the receiver's clock).
With the broker, also the backlog: the worker is stopped, BENCH_CALLBACK_TASKS more are
marked done, the worker is started again and drains them (callbacks/s).
Figures only; nothing is asserted.
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
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from bench import seed
from bench.report import say
from bench.server import BIN, ROOT, Server, _clean_environ, _running

TASKS = int(os.environ.get("BENCH_CALLBACK_TASKS", "10000"))
CLIENTS = int(os.environ.get("BENCH_CALLBACK_CLIENTS", "32"))
AMQP = os.environ.get("BENCH_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")


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


async def create_tasks(api: httpx.AsyncClient, receiver_url: str, start: int) -> list[int]:
    ids: list[int] = []
    for first in range(start, start + TASKS, 5000):
        items = [
            {
                "template": "bench",
                "content": {"n": n},
                "users": ["admin"],
                "callback_url": f"{receiver_url}/cb/{n}",
                "callback_content": f'{{"n": {n}}}',
            }
            for n in range(first, min(first + 5000, start + TASKS))
        ]
        r = await api.post("/api/v1/tasks/bulk", json={"tasks": items})
        r.raise_for_status()
        ids += [int(uri.rsplit("/", 1)[1]) for uri in r.json()["tasks"]]
    return ids


# wrk marks a contiguous id range done: thread t of n takes first+t-1, first+t-1+n, ...
WRK_DONE = """
local counter = 1
function setup(thread)
  thread:set("tid", counter)
  counter = counter + 1
end

function init(args)
  first, last, step = tonumber(args[1]), tonumber(args[2]), tonumber(args[3])
  wrk.method = "PUT"
  wrk.body = '{"status": "done"}'
  wrk.headers["Content-Type"] = "application/json"
  wrk.headers["Authorization"] = args[4]
  nextid = first + tid - 1
end

function request()
  local id = nextid
  nextid = nextid + step
  if id > last then
    return wrk.format("GET", "/-/healthy")
  end
  return wrk.format(nil, "/api/v1/tasks/" .. id)
end

"""


async def mark_done_wrk(
    base_url: str, authorization: str, database_url: str, ids: list[int], workdir: Path
) -> float:
    """The ids done through wrk (a light load generator), stopped once the database shows
    no more progress (after the last id, wrk's threads only ask /-/healthy)."""
    script = workdir / "done.lua"
    script.write_text(WRK_DONE)
    threads = 2
    started = time.perf_counter()
    process = await asyncio.create_subprocess_exec(
        "wrk",
        f"-t{threads}",
        f"-c{CLIENTS}",
        "-d600s",
        "-s",
        str(script),
        base_url,
        "--",
        str(ids[0]),
        str(ids[-1]),
        str(threads),
        authorization,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    # wrk spends a request() call on each thread before it sends anything, so an id or two
    # may never be sent: once the count stops falling, the caller sends the rest itself.
    try:
        left, since = len(ids), time.perf_counter()
        while process.returncode is None and left:
            await asyncio.sleep(0.2)
            now_left = len(await not_done(database_url, ids))
            if now_left < left:
                left, since = now_left, time.perf_counter()
            elif left < len(ids) and time.perf_counter() - since > 1.0:
                break
        return since - started
    finally:
        if process.returncode is None:
            process.terminate()
        await process.wait()


async def not_done(database_url: str, ids: list[int]) -> list[int]:
    engine = create_async_engine(database_url)
    try:
        async with engine.connect() as conn:
            rows = await conn.execute(
                text("SELECT id FROM tasks WHERE status <> 'done' AND id BETWEEN :a AND :b"),
                {"a": ids[0], "b": ids[-1]},
            )
            return [int(row[0]) for row in rows]
    finally:
        await engine.dispose()


async def set_all_done(
    api: httpx.AsyncClient, authorization: str, database_url: str, ids: list[int], workdir: Path
) -> tuple[float, str]:
    """Mark every id done; (seconds, load generator)."""
    contiguous = ids == list(range(ids[0], ids[0] + len(ids)))
    if shutil.which("wrk") and contiguous:
        base_url = str(api.base_url).rstrip("/")
        seconds = await mark_done_wrk(base_url, authorization, database_url, ids, workdir)
        left = await not_done(database_url, ids)
        if left:
            seconds += await mark_done(api, left)
        return seconds, f"wrk, {CLIENTS} connections"
    return await mark_done(api, ids), f"Python httpx, {CLIENTS} clients"


async def mark_done(api: httpx.AsyncClient, ids: list[int]) -> float:
    pending = list(reversed(ids))
    started = time.perf_counter()

    async def client() -> None:
        while pending:
            task_id = pending.pop()
            r = await api.put(f"/api/v1/tasks/{task_id}", json={"status": "done"})
            r.raise_for_status()

    await asyncio.gather(*(client() for _ in range(CLIENTS)))
    return time.perf_counter() - started


async def received(
    receiver_server: Server, at_least: int, within: float = 600
) -> list[tuple[str, float]]:
    deadline = time.monotonic() + within
    async with httpx.AsyncClient(base_url=receiver_server.base_url, timeout=30) as client:
        while True:
            got = [(str(i), float(t)) for i, t in (await client.get("/stats")).json()]
            if len({i for i, _ in got}) >= at_least or time.monotonic() > deadline:
                return got
            await asyncio.sleep(0.25)


def _utc(value: datetime | str) -> datetime:
    # SQLite hands a plain query's timestamps back as text.
    at = datetime.fromisoformat(value) if isinstance(value, str) else value
    return at.replace(tzinfo=UTC)


async def occurred(database_url: str) -> dict[str, float]:
    engine = create_async_engine(database_url)
    try:
        async with engine.connect() as conn:
            rows = await conn.execute(
                text(
                    "SELECT event_id, occurred_at FROM outbox_events "
                    "WHERE type = 'task.status.done'"
                )
            )
            return {event_id: _utc(at).timestamp() for event_id, at in rows}
    finally:
        await engine.dispose()


def report(
    label: str,
    started: float,
    done_seconds: float,
    got: list[tuple[str, float]],
    events: dict[str, float],
    expected: int,
) -> None:
    first_by_id: dict[str, float] = {}
    for event_id, at in got:
        first_by_id.setdefault(event_id, at)
    arrived = len(first_by_id)
    span = max(first_by_id.values()) - started
    latencies = sorted((at - events[i]) * 1000 for i, at in first_by_id.items() if i in events)
    p50 = statistics.median(latencies)
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
    say(
        f"  {label}: {arrived:,}/{expected:,} callbacks ({len(got) - arrived} repeats) in "
        f"{span:.1f} s = {arrived / span:,.0f} callbacks/s end to end; API done rate "
        f"{expected / done_seconds:,.0f}/s; event-to-receipt latency p50 {p50:.0f} ms, "
        f"p99 {p99:.0f} ms"
    )


async def run_mode(broker: bool, workdir: Path) -> None:
    async with AsyncExitStack() as stack:
        backend = "postgresql" if broker else "sqlite"
        db = seed.database_for(backend, f"tm_cb_{os.getpid()}_{int(broker)}", workdir)
        await seed.create(db)
        stack.push_async_callback(seed.drop, db)
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
        say(f"{mode}:")
        ids = await create_tasks(api, rx.base_url, 0)
        if broker:
            worker = await stack.enter_async_context(process("worker", ["worker"], env, workdir))
            await asyncio.sleep(2)
        started = time.time()
        done_seconds, loadgen = await set_all_done(api, basic, db.url, ids, workdir)
        say(f"  done requests from {loadgen}")
        got = await received(rx, TASKS)
        report("live", started, done_seconds, got, await occurred(db.url), TASKS)
        if broker:
            worker.terminate()
            worker.wait(30)
            more = await create_tasks(api, rx.base_url, TASKS)
            await set_all_done(api, basic, db.url, more, workdir)
            async with process("worker2", ["worker"], env, workdir):
                started = time.time()
                got = await received(rx, 2 * TASKS)
                drained = sorted(t for _, t in got)[TASKS:]
                span = drained[-1] - started
                say(
                    f"  backlog: {TASKS:,} callbacks queued while the worker was down, "
                    f"drained in {span:.1f} s = {TASKS / span:,.0f} callbacks/s "
                    "(worker start included)"
                )


def main() -> int:
    say(
        f"delivery benchmark: {TASKS:,} tasks marked done by {CLIENTS} clients; "
        "targets with the broker: >= 500 callbacks/s, p99 < 1 s"
    )
    with tempfile.TemporaryDirectory(prefix="tm-cb-") as tmp:
        for broker in (True, False):
            try:
                asyncio.run(run_mode(broker, Path(tmp)))
            except Exception as exc:
                say(f"  FAILED: {exc!r}")
                return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
