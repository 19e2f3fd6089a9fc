"""A status change's hot path (two round trips on PostgreSQL and MariaDB) answers as the
generic path does.

Each scenario runs twice on twin tasks: once as the API serves it, once with the hot path
switched off, and the responses and the events written must be the same. The test also
checks which steps the hot path served itself.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from api.tasks import status_mysql, status_pg, status_sqlite
from tests.api.helpers import events, expire_lock, make_group, make_task, make_template
from tests.conftest import READER_PASSWORD, UserFactory

Step = tuple[str, str, int, dict[str, Any]]  # client, method, task index, request options


def _normal(value: Any, ids: dict[int, int]) -> Any:
    """A response or event with its task ids, event ids and times replaced by stable names."""
    text = json.dumps(value)
    for task_id, index in sorted(ids.items(), key=lambda item: -item[0]):
        text = text.replace(f"/tasks/{task_id}", f"/tasks/#{index}")
        text = text.replace(f"Task {task_id} ", f"Task #{index} ")
        text = text.replace(f'"id": {task_id},', f'"id": "#{index}",')
    normal = json.loads(text)
    for key in ("create_time", "update_time", "occurred_at"):
        if isinstance(normal, dict) and key in normal:
            normal[key] = "<time>"
    if isinstance(normal, dict) and normal.get("lock_expires_at") is not None:
        normal["lock_expires_at"] = "<time>"
    return normal


async def _run(
    app: FastAPI,
    clients: dict[str, httpx.AsyncClient],
    tasks: list[dict[str, Any]],
    steps: list[Step],
    setup: Callable[[list[int]], Awaitable[None]],
) -> tuple[list[Any], list[Any]]:
    ids = {t["id"]: i for i, t in enumerate(tasks)}
    await setup([t["id"] for t in tasks])
    before = {e.id for e in await events(app)}
    answers = []
    for who, method, index, options in steps:
        url = f"/api/v1/tasks/{tasks[index]['id']}"
        r = await clients[who].request(method, url, **options)
        answers.append(
            (who, index, r.status_code, r.headers["content-type"], _normal(r.json(), ids))
        )
    written = []
    for event in await events(app):
        if event.id in before:
            continue
        envelope = json.loads(event.payload)
        del envelope["id"]
        written.append(
            (
                ids.get(event.task_id or 0),
                event.type,
                event.sequence,
                _normal(envelope, ids),
                _normal(envelope["task"], ids),
            )
        )
    return answers, written


async def _compare(
    app: FastAPI,
    monkeypatch: pytest.MonkeyPatch,
    backend: str,
    clients: dict[str, httpx.AsyncClient],
    make: Callable[[], Awaitable[list[dict[str, Any]]]],
    steps: list[Step],
    setup: Callable[[list[int]], Awaitable[None]],
    served: list[int],
) -> None:
    """Run `steps` on two twin task sets, hot path on then off; the outcomes must match.

    `served` lists the steps that the hot path answers itself.
    """
    hits: list[bool] = []
    original = {
        "postgresql": status_pg.set_status,
        "mariadb": status_mysql.set_status,
        "sqlite": status_sqlite.set_status,
    }[backend]

    async def counted(*args: Any) -> Any:
        result = await original(*args)
        hits.append(result is not None)
        return result

    first, second = await make(), await make()
    calls: list[int] = []
    with monkeypatch.context() as patch:
        patch.setattr(status_pg, "set_status", counted)
        patch.setattr(status_mysql, "set_status", counted)
        patch.setattr(status_sqlite, "set_status", counted)
        fast: list[Any] = []
        for n, step in enumerate(steps):
            hits.clear()
            answer, _ = await _run(app, clients, first, [step], _nothing if n else setup)
            fast.extend(answer)
            if any(hits):
                calls.append(n)
    with monkeypatch.context() as patch:
        patch.setattr(status_pg, "simple_status", lambda body, if_match: None)
        slow, _ = await _run(app, clients, second, steps, setup)
    assert fast == slow
    assert await _events_of(app, first) == await _events_of(app, second)
    assert calls == served


async def _nothing(ids: list[int]) -> None:
    return None


async def _events_of(app: FastAPI, tasks: list[dict[str, Any]]) -> list[Any]:
    ids = {t["id"]: i for i, t in enumerate(tasks)}
    found = []
    for event in await events(app):
        if event.task_id in ids:
            envelope = json.loads(event.payload)
            assert envelope["id"] == event.event_id
            assert list(envelope) == ["id", "type", "occurred_at", "sequence", "actor", "task"]
            del envelope["id"]
            found.append((ids[event.task_id], event.type, event.sequence, _normal(envelope, ids)))
    return found


@pytest.fixture
async def people(admin: httpx.AsyncClient, make_user: UserFactory) -> dict[str, httpx.AsyncClient]:
    clients = {
        "admin": admin,
        "jdoe": await make_user("jdoe"),
        "asmith": await make_user("asmith"),
        "coord": await make_user("coord", roles=("superuser",)),
    }
    await make_template(admin)
    await make_group(admin, "neuro", ["jdoe"])
    for client in clients.values():  # the hot path knows a Basic password once it verified
        assert (await client.get("/api/v1/users/me")).status_code == 200
    return clients


def _put(body: dict[str, Any], **headers: str) -> dict[str, Any]:
    return {"json": body, "headers": headers} if headers else {"json": body}


async def test_ending_tasks_matches_the_generic_path(
    clean_app: FastAPI,
    monkeypatch: pytest.MonkeyPatch,
    backend: str,
    people: dict[str, httpx.AsyncClient],
) -> None:
    admin = people["admin"]

    async def make() -> list[dict[str, Any]]:
        return [
            await make_task(
                admin, users=["jdoe"], tags=["zeta", "Alpha"], callback_url="http://x/cb"
            ),
            await make_task(admin, groups=["neuro"], tracking_id="T1"),
            await make_task(admin, users=["jdoe", "asmith"]),
            await make_task(admin, users=["asmith"]),
            await make_task(admin, users=["jdoe"]),
        ]

    async def setup(ids: list[int]) -> None:
        # Task 2 locked by asmith, task 4 by jdoe.
        assert (await people["asmith"].put(f"/api/v1/tasks/{ids[2]}/lock")).status_code == 200
        assert (await people["jdoe"].put(f"/api/v1/tasks/{ids[4]}/lock")).status_code == 200

    steps: list[Step] = [
        ("jdoe", "PUT", 0, _put({"status": "done"})),  # 0: own queued task
        ("jdoe", "PUT", 0, _put({"status": "done"})),  # 1: again: nothing changes
        ("jdoe", "PUT", 0, _put({"status": "locked"})),  # 2: done -> locked: 409
        ("jdoe", "PUT", 0, _put({"status": "queued"})),  # 3: reopen needs task_update_all: 403
        ("jdoe", "PUT", 0, _put({"status": "colour"})),  # 4: unknown: 422
        ("admin", "PUT", 0, _put({"status": "failed"})),  # 5: reopen to another end state
        ("admin", "PUT", 0, _put({"status": "queued"})),  # 6: reopen
        ("jdoe", "PUT", 1, _put({"status": "aborted"})),  # 7: a task of the caller's group
        ("jdoe", "PUT", 2, _put({"status": "done"})),  # 8: locked by asmith: 409
        ("coord", "PUT", 2, _put({"status": "done"})),  # 9: task_update_status_all may
        ("jdoe", "PUT", 3, _put({"status": "done"})),  # 10: not the caller's: 404
        ("jdoe", "PUT", 4, _put({"status": "done", "lock_version": 7})),  # 11: stale: 409
        ("jdoe", "PUT", 4, _put({"status": "failed", "lock_version": 1})),  # 12: the holder
        ("jdoe", "PUT", 4, _put({"status": "failed", "lock_version": 1})),  # 13: again
        ("asmith", "PUT", 4, _put({"status": "failed"})),  # 14: not reachable: 404
        ("coord", "PUT", 0, _put({"status": "done"})),  # 15: coordinator ends a queued task
    ]
    await _compare(
        clean_app, monkeypatch, backend, people, make, steps, setup, [0, 1, 5, 6, 7, 9, 12, 13, 15]
    )


async def test_locks_and_fallbacks_match_the_generic_path(
    clean_app: FastAPI,
    monkeypatch: pytest.MonkeyPatch,
    backend: str,
    people: dict[str, httpx.AsyncClient],
) -> None:
    admin = people["admin"]

    async def make() -> list[dict[str, Any]]:
        return [await make_task(admin, users=["jdoe", "asmith"]) for _ in range(6)]

    async def setup(ids: list[int]) -> None:
        for i in (2, 3, 5):
            assert (await people["jdoe"].put(f"/api/v1/tasks/{ids[i]}/lock")).status_code == 200
        # Task 2's lease ran out and nobody took it; task 3's was taken by asmith since.
        await expire_lock(clean_app, ids[2])
        await expire_lock(clean_app, ids[3])
        assert (await people["asmith"].put(f"/api/v1/tasks/{ids[3]}/lock")).status_code == 200

    steps: list[Step] = [
        ("jdoe", "PUT", 0, _put({"status": "locked"})),  # 0: lock through PUT
        ("jdoe", "PUT", 0, _put({"status": "locked"})),  # 1: already the caller's
        ("asmith", "PUT", 0, _put({"status": "locked"})),  # 2: someone else's: 409
        ("jdoe", "PUT", 0, _put({"status": "queued"})),  # 3: unlock through PUT
        ("jdoe", "PUT", 0, _put({"status": "locked", "lock_version": 1})),  # 4: again
        ("asmith", "PUT", 0, _put({"status": "queued"})),  # 5: someone else's: 403
        ("coord", "PUT", 0, _put({"status": "queued"})),  # 6: task_update_lock_all may
        ("coord", "PUT", 0, _put({"status": "locked"})),  # 7: the coordinator locks
        # The rest goes to the generic path.
        ("admin", "PUT", 1, _put({"status": "done", "priority": 4})),  # other fields
        ("jdoe", "PUT", 2, _put({"status": "done"})),  # expired, not taken: accepted
        ("jdoe", "PUT", 3, _put({"status": "done"})),  # expired and taken: 409
        ("jdoe", "PUT", 5, _put({"status": "done"}, **{"If-Match": '"9"'})),  # stale If-Match
        ("jdoe", "PUT", 5, _put({"status": "done"}, **{"If-Match": '"1"'})),
        ("jdoe", "PUT", 4, _put({"status": "done", "lock_version": True})),  # not a number
        ("jdoe", "PUT", 4, _put({"status": None})),
        ("jdoe", "PUT", 4, _put({"status": "done", "colour": "blue"})),  # unknown field: 422
        ("jdoe", "PUT", 4, {"content": b'{"status": "done"}'}),  # not sent as JSON
    ]
    await _compare(clean_app, monkeypatch, backend, people, make, steps, setup, [0, 1, 3, 4, 6, 7])


async def test_a_task_group_is_completed_through_the_generic_path(
    clean_app: FastAPI, admin: httpx.AsyncClient, make_user: UserFactory
) -> None:
    reader = await make_user("jdoe")
    await make_template(admin)
    body = {"project": "p", "template": "glandula_pinealis", "content": "x", "users": ["jdoe"]}
    r = await admin.post(
        "/api/v1/taskgroups",
        json={"label": "batch", "tasks": [body], "callback_url": "http://sg/cb"},
    )
    assert r.status_code == 201, r.text
    group = r.json()
    task_uri = group["tasks"][0]["uri"]
    done = await reader.put(task_uri, json={"status": "done"})
    assert done.status_code == 200, done.text
    assert done.json() == (await reader.get(task_uri)).json()
    assert (await admin.get(group["uri"])).json()["status"] == "done"
    types = [e.type for e in await events(clean_app)]
    assert types.count("taskgroup.done") == 1


async def _token(anon: httpx.AsyncClient, username: str, password: str = READER_PASSWORD) -> str:
    r = await anon.post("/api/v1/auth/token", data={"username": username, "password": password})
    assert r.status_code == 200, r.text
    return str(r.json()["access_token"])


async def test_status_change_refuses_a_deactivated_user_and_an_old_password(
    admin: httpx.AsyncClient, anon: httpx.AsyncClient, make_user: UserFactory
) -> None:
    reader = await make_user("jdoe")
    other = await make_user("asmith")
    await make_template(admin)
    tasks = [await make_task(admin, users=["jdoe", "asmith"]) for _ in range(6)]
    token = {"Authorization": f"Bearer {await _token(anon, 'jdoe')}"}
    # Both credentials are used once, so both are known when they stop being valid.
    assert (await reader.put(tasks[0]["uri"], json={"status": "done"})).status_code == 200
    r = await anon.put(tasks[1]["uri"], json={"status": "done"}, headers=token)
    assert r.status_code == 200, r.text
    assert (await other.put(tasks[2]["uri"], json={"status": "done"})).status_code == 200

    assert (await admin.delete("/api/v1/users/jdoe")).status_code == 200
    by_token = await anon.put(tasks[3]["uri"], json={"status": "done"}, headers=token)
    assert by_token.status_code == 401
    assert by_token.headers["content-type"] == "application/problem+json"
    assert by_token.json()["detail"] == "Token revoked"
    by_password = await reader.put(tasks[3]["uri"], json={"status": "done"})
    assert by_password.status_code == 401
    assert by_password.json()["detail"] == "Invalid username or password"

    assert (await admin.put("/api/v1/users/asmith", json={"password": "new-password"})).is_success
    old = await other.put(tasks[4]["uri"], json={"status": "done"})
    assert old.status_code == 401
    listed = await admin.get("/api/v1/tasks", params={"scope": "all", "status": "queued"})
    assert listed.json()["total_tasks"] == 3


async def test_credentials_are_checked_before_the_body(
    admin: httpx.AsyncClient, anon: httpx.AsyncClient, make_user: UserFactory
) -> None:
    reader = await make_user("jdoe")
    await make_template(admin)
    task = await make_task(admin, users=["jdoe"])
    for body in ({"status": "done"}, {"colour": "blue"}):
        refused = await anon.put(task["uri"], json=body)
        assert refused.status_code == 401
        assert "Authentication required" in refused.json()["detail"]
    unknown = await reader.put(task["uri"], json={"colour": "blue"})
    assert unknown.status_code == 422
    assert unknown.json()["errors"][0]["loc"] == ["body", "colour"]
    assert (await reader.get(task["uri"])).json()["status"] == "queued"


async def test_concurrent_changes_write_one_event(
    clean_app: FastAPI, people: dict[str, httpx.AsyncClient]
) -> None:
    admin, jdoe, asmith = people["admin"], people["jdoe"], people["asmith"]
    done = await make_task(admin, users=["jdoe", "asmith"])
    locked = await make_task(admin, users=["jdoe", "asmith"])
    ends = await asyncio.gather(
        *(c.put(done["uri"], json={"status": "done"}) for c in (jdoe, asmith) * 3)
    )
    assert [r.status_code for r in ends] == [200] * 6
    locks = await asyncio.gather(
        *(c.put(locked["uri"], json={"status": "locked"}) for c in (jdoe, asmith) * 2)
    )
    assert sorted(r.status_code for r in locks)[:1] == [200]
    holders = {r.json()["lock_holder"] for r in locks if r.status_code == 200}
    assert len(holders) == 1
    assert all(r.json()["error"] == "Task already locked!" for r in locks if r.status_code == 409)
    types = [e.type for e in await events(clean_app)]
    assert types.count("task.status.done") == 1
    assert types.count("task.locked") == 1
