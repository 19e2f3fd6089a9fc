"""Nothing is lost whatever is killed: the worker (SIGKILL), the broker (stopped and started),
the API (after its commit, before its response). 1,000 tasks marked done each time; every
callback arrives at least once, and a repeated one carries the same webhook-id."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from tests.broker import create_vhost, delete_vhost
from tests.e2e.conftest import (
    TASKMANAGER,
    Server,
    configured_database_env,
    free_port,
    require_service,
    run_server,
)
from tests.receiver import Receiver, ThreadedReceiver, wait_until

pytestmark = pytest.mark.e2e

TASKS = 1000
REPO = Path(__file__).resolve().parents[2]
FAST = {
    "TASKMAN_DELIVERY_CLAIM_SECONDS": "3",
    "TASKMAN_DELIVERY_RETRY_BASE_SECONDS": "0.2",
    "TASKMAN_DELIVERY_POLL_SECONDS": "0.5",
    "TASKMAN_SHUTDOWN_GRACE_SECONDS": "10",
}


@contextmanager
def deployment(tmp_path: Path) -> Iterator[tuple[Server, Receiver]]:
    """PostgreSQL, a vhost of its own, the API with a broker configured, and a receiver."""
    require_service("postgresql")
    require_service("rabbitmq")
    with ExitStack() as stack:
        stack.callback(_kill_leftovers)
        name, amqp_url = create_vhost()
        stack.callback(delete_vhost, name)
        env = stack.enter_context(configured_database_env("postgresql", tmp_path))
        receiver = stack.enter_context(ThreadedReceiver())
        server = stack.enter_context(
            run_server(tmp_path / "api", env | FAST | {"TASKMAN_AMQP_URL": amqp_url})
        )
        yield server, receiver


_STARTED: list[subprocess.Popen[bytes]] = []


def _kill_leftovers() -> None:
    """Workers a failed test left running."""
    for process in _STARTED:
        if process.poll() is None:
            process.kill()
            process.wait(30)
    _STARTED.clear()


class WorkerProcess:
    """`taskmanager worker`, started as its container starts it."""

    def __init__(self, server: Server, tag: str) -> None:
        self.log_path = server.workdir / f"worker-{tag}.log"
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [str(TASKMANAGER), "worker"],
                cwd=server.workdir,
                env=server.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        _STARTED.append(self.process)

    def kill(self) -> None:
        self.process.kill()
        self.process.wait(30)

    def stop(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(30)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def _create_tasks(
    server: Server, receiver: Receiver, path: str = "/ok", count: int = TASKS
) -> list[int]:
    """`count` tasks whose callbacks go to `{path}/{n}` on the receiver; their ids."""
    with httpx.Client(
        base_url=server.base_url, auth=("admin", server.admin_password), timeout=120
    ) as admin:
        r = admin.post("/api/v1/task_templates", json={"label": "t", "content": "a: 1"})
        assert r.status_code == 201, r.text
        items = [
            {
                "template": "t",
                "content": {"n": i},
                "users": ["admin"],
                "callback_url": receiver.url(f"{path}/{i}"),
                "callback_content": json.dumps({"n": i}),
            }
            for i in range(count)
        ]
        r = admin.post("/api/v1/tasks/bulk", json={"tasks": items})
        assert r.status_code == 201, r.text
        return [int(uri.rsplit("/", 1)[1]) for uri in r.json()["tasks"]]


async def _mark_done(base_url: str, password: str, ids: list[int]) -> list[int]:
    """PUT status done for every id, 16 at a time; the ids whose request got no answer."""
    pending = list(ids)
    failed: list[int] = []
    async with httpx.AsyncClient(base_url=base_url, auth=("admin", password), timeout=60) as c:

        async def one_by_one() -> None:
            while pending:
                task_id = pending.pop()
                try:
                    r = await c.put(f"/api/v1/tasks/{task_id}", json={"status": "done"})
                    assert r.status_code == 200, r.text
                except httpx.TransportError:
                    failed.append(task_id)

        await asyncio.gather(*(one_by_one() for _ in range(16)))
    return failed


def _in_background(
    base_url: str, password: str, ids: list[int]
) -> tuple[threading.Thread, list[int]]:
    failed: list[int] = []
    thread = threading.Thread(
        target=lambda: failed.extend(asyncio.run(_mark_done(base_url, password, ids)))
    )
    thread.start()
    return thread, failed


def _all_arrived(receiver: Receiver) -> bool:
    return len({r.path for r in list(receiver.received)}) >= TASKS


def _check_callbacks(receiver: Receiver) -> int:
    """Every task called back at least once; repeats carry the first one's webhook-id.
    Returns how many requests were repeats."""
    ids: dict[str, set[str]] = defaultdict(set)
    for request in list(receiver.received):
        assert request.method == "PUT"
        n = int(request.path.rsplit("/", 1)[1])
        assert json.loads(request.body) == {"n": n}
        ids[request.path].add(request.headers["webhook-id"])
    assert len(ids) == TASKS
    assert all(len(seen) == 1 for seen in ids.values()), "a repeat carried another webhook-id"
    return len(receiver.received) - TASKS


def test_worker_killed_mid_stream_loses_no_callback(tmp_path: Path) -> None:
    with deployment(tmp_path) as (server, receiver):
        ids = _create_tasks(server, receiver)
        first = WorkerProcess(server, "first")
        thread, failed = _in_background(server.base_url, server.admin_password, ids)
        wait_until(lambda: len(receiver.received) >= 200, 120, "the first callbacks")
        first.kill()
        second = WorkerProcess(server, "second")
        thread.join()
        assert failed == []
        wait_until(lambda: _all_arrived(receiver), 180, "every callback")
        _check_callbacks(receiver)
        assert second.stop() == 0, second.log()


@pytest.mark.serial
def test_broker_stopped_and_started_mid_stream_loses_no_callback(tmp_path: Path) -> None:
    with deployment(tmp_path) as (server, receiver):
        ids = _create_tasks(server, receiver)
        worker = WorkerProcess(server, "only")
        thread, failed = _in_background(server.base_url, server.admin_password, ids)
        wait_until(lambda: len(receiver.received) >= 200, 120, "the first callbacks")
        subprocess.run(["rabbitmqctl", "-q", "stop_app"], check=True, timeout=120)
        try:
            time.sleep(3)
        finally:
            subprocess.run(["rabbitmqctl", "-q", "start_app"], check=True, timeout=300)
            subprocess.run(["rabbitmqctl", "-q", "await_startup"], check=True, timeout=300)
        thread.join()
        assert failed == []
        wait_until(lambda: _all_arrived(receiver), 240, "every callback")
        _check_callbacks(receiver)
        assert worker.stop() == 0, worker.log()


def _done_events_before(server: Server, task_ids: list[int], moment: datetime) -> int:
    async def count() -> int:
        engine = create_async_engine(server.env["TASKMAN_DATABASE_URL"])
        try:
            async with engine.connect() as conn:
                rows = await conn.execute(
                    text(
                        "SELECT count(*) FROM outbox_events WHERE type = 'task.status.done' "
                        "AND task_id = ANY(:ids) AND occurred_at <= :moment"
                    ),
                    {"ids": task_ids, "moment": moment.astimezone(UTC).replace(tzinfo=None)},
                )
                return int(rows.scalar_one())
        finally:
            await engine.dispose()

    return asyncio.run(count())


@contextmanager
def crashing_server(server: Server, crash_at: int) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """The same app under uvicorn, dying right after its `crash_at`-th done commit."""
    port = free_port()
    env = server.env | {"TASKMAN_TEST_CRASH_AT_DONE": str(crash_at), "PYTHONPATH": str(REPO)}
    with (server.workdir / "crashing.log").open("wb") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "--factory",
                "tests.e2e.crash_after_commit:app_factory",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
            ],
            cwd=REPO,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: _ready(url), 60, "the crashing server")
        yield url, process
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(30)


def _ready(url: str) -> bool:
    try:
        return httpx.get(url + "/-/ready", timeout=2).status_code == 200
    except httpx.TransportError:
        return False


def test_api_killed_after_commit_before_response_loses_no_callback(tmp_path: Path) -> None:
    with deployment(tmp_path) as (server, receiver):
        ids = _create_tasks(server, receiver)
        worker = WorkerProcess(server, "only")
        with crashing_server(server, crash_at=300) as (url, process):
            failed = asyncio.run(_mark_done(url, server.admin_password, ids))
            assert process.wait(30) == 9
        crashed_at = datetime.now(UTC)
        assert failed, "the crash left no request unanswered"
        # At least one unanswered request was committed: its callback must come all the same.
        assert _done_events_before(server, failed, crashed_at) >= 1
        # The client tries again on a healthy server (a repeated done fires nothing).
        assert asyncio.run(_mark_done(server.base_url, server.admin_password, failed)) == []
        wait_until(lambda: _all_arrived(receiver), 180, "every callback")
        _check_callbacks(receiver)
        assert worker.stop() == 0, worker.log()


def test_worker_stops_gracefully_on_sigterm_and_nothing_in_flight_is_lost(tmp_path: Path) -> None:
    """SIGTERM while slow receivers hold deliveries: the worker finishes or hands back what
    it holds within its grace period, exits 0, and the next worker delivers the rest."""
    with deployment(tmp_path) as (server, receiver):
        ids = _create_tasks(server, receiver, path="/slow/300", count=300)
        worker = WorkerProcess(server, "first")
        assert asyncio.run(_mark_done(server.base_url, server.admin_password, ids)) == []
        wait_until(lambda: len(receiver.received) >= 50, 60, "the first callbacks")
        started = time.monotonic()
        assert worker.stop() == 0, worker.log()
        assert time.monotonic() - started < 15  # the grace period is 10 s
        assert "stopping" in worker.log()
        second = WorkerProcess(server, "second")
        wait_until(lambda: len({r.path for r in list(receiver.received)}) >= 300, 120, "all")
        paths: dict[str, set[str]] = defaultdict(set)
        for request in list(receiver.received):
            paths[request.path].add(request.headers["webhook-id"])
        assert len(paths) == 300
        assert all(len(seen) == 1 for seen in paths.values())
        assert second.stop() == 0, second.log()
