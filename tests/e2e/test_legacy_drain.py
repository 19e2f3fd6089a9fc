"""32 readers drain a queue the 6.x way (list, PUT lock, 409 -> list again) against two
API processes sharing one database: no task is ever locked by two readers."""

from __future__ import annotations

import asyncio
import random
import secrets
from collections import Counter
from contextlib import ExitStack
from pathlib import Path

import httpx
import pytest

from tests.backends import BACKENDS
from tests.e2e.conftest import (
    CHEAP_PASSWORD_HASHES,
    Server,
    configured_database_env,
    require_service,
    run_server,
)

pytestmark = pytest.mark.e2e

READERS = 32
TASKS = 2000


def _setup(server: Server) -> None:
    with httpx.Client(
        base_url=server.base_url, auth=("admin", server.admin_password), timeout=180
    ) as admin:
        names = [f"reader{i:02d}" for i in range(READERS)]
        for name in names:
            r = admin.post(
                "/api/v1/users",
                json={"username": name, "password": f"{name}-pw", "email": f"{name}@x.org"},
            )
            assert r.status_code == 201, r.text
            assert admin.put(f"/api/v1/users/{name}/roles/user").status_code == 200
        r = admin.post("/api/v1/groups", json={"groupname": "pool", "members": names})
        assert r.status_code == 201, r.text
        r = admin.post("/api/v1/task_templates", json={"label": "t", "content": "a: 1"})
        assert r.status_code == 201, r.text
        items = [{"template": "t", "content": {"n": i}, "groups": ["pool"]} for i in range(TASKS)]
        r = admin.post("/api/v1/tasks/bulk", json={"tasks": items})
        assert r.status_code == 201, r.text


async def _reader(base_urls: list[str], index: int, won: list[tuple[int, str]]) -> None:
    name = f"reader{index:02d}"
    rng = random.Random(index)
    clients = [
        httpx.AsyncClient(base_url=url, auth=(name, f"{name}-pw"), timeout=180) for url in base_urls
    ]
    try:
        while True:
            client = rng.choice(clients)
            listed = await client.get("/api/v1/tasks", params={"status": "queued", "limit": 16})
            assert listed.status_code == 200, listed.text
            tasks = listed.json()["tasks"]
            if not tasks:
                return
            task = rng.choice(tasks)
            locked = await rng.choice(clients).put(f"/api/v1/tasks/{task['id']}/lock")
            if locked.status_code == 409:
                continue
            assert locked.status_code == 200, locked.text
            won.append((task["id"], name))
            done = await rng.choice(clients).put(
                f"/api/v1/tasks/{task['id']}", json={"status": "done"}
            )
            assert done.status_code == 200, done.text
    finally:
        for client in clients:
            await client.aclose()


@pytest.mark.parametrize("backend", BACKENDS)
def test_two_processes_never_give_one_task_to_two_readers(backend: str, tmp_path: Path) -> None:
    with ExitStack() as stack:
        if backend == "sqlite":
            env = {
                "TASKMAN_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/shared.db",
                "TASKMAN_SECRET_KEY": secrets.token_urlsafe(48),
                "TASKMAN_ADMIN_PASSWORD": secrets.token_urlsafe(16),
            }
        else:
            require_service(backend)
            env = stack.enter_context(configured_database_env(backend, tmp_path))
        # 32 readers, each created and logged in on both processes: 100 hashes.
        env = {**env, **CHEAP_PASSWORD_HASHES}
        first = stack.enter_context(run_server(tmp_path / "api-1", env))
        second = stack.enter_context(run_server(tmp_path / "api-2", env))
        _setup(first)

        won: list[tuple[int, str]] = []

        async def drain() -> None:
            urls = [first.base_url, second.base_url]
            await asyncio.gather(*(_reader(urls, i, won) for i in range(READERS)))

        asyncio.run(drain())

    twice = {task: n for task, n in Counter(task for task, _ in won).items() if n > 1}
    assert twice == {}, f"tasks locked by two readers: {twice}"
    assert len(won) == TASKS
