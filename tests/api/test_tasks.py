from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI

from shared.taskevents import sweep_expired_leases
from tests.api.helpers import events, expire_lock, make_group, make_task, make_template
from tests.conftest import UserFactory

FIXTURES = Path(__file__).parents[1] / "fixtures"
L100 = json.loads((FIXTURES / "tasks" / "L100.json").read_text())


async def test_create_and_get_task_returns_6x_shape(
    admin: httpx.AsyncClient, make_user: UserFactory
) -> None:
    await make_user("jdoe")
    template_uri = await make_template(admin)
    content = L100
    task = await make_task(
        admin,
        content=content,
        users=["jdoe"],
        tags=["pinealis", "cohort-2026"],
        callback_url="http://xnat.example.org/callback",
        callback_content={"status": "done"},
        tracking_id="L100",
        application_name="ViewR",
        application_version="5.2",
        priority=3,
    )
    assert task["uri"] == f"/api/v1/tasks/{task['id']}"
    assert task["template"] == template_uri
    assert json.loads(task["content"]) == content
    assert task["status"] == "queued"
    assert task["lock"] == task["uri"] + "/lock"
    assert task["lock_holder"] is None
    assert len(task["tags"]) == 2
    assert task["users"] == ["/api/v1/users/2"]
    assert json.loads(task["callback_content"]) == {"status": "done"}
    assert task["priority"] == 3
    assert (await admin.get(task["uri"])).json() == task
    # Tags were created, and the object paths resolve.
    for tag_uri in task["tags"]:
        assert (await admin.get(tag_uri)).status_code == 200


async def test_string_content_is_stored_as_sent(
    admin: httpx.AsyncClient, make_user: UserFactory
) -> None:
    await make_user("jdoe")
    await make_template(admin)
    task = await make_task(admin, content="not json {", users=["jdoe"])
    assert task["content"] == "not json {"


async def test_bad_references_give_404_naming_them(
    admin: httpx.AsyncClient, make_user: UserFactory
) -> None:
    await make_user("jdoe")
    await make_template(admin)
    body = {"template": "glandula_pinealis", "content": "x", "users": ["jdoe"]}
    r = await admin.post("/api/v1/tasks", json={**body, "template": "nope"})
    assert r.status_code == 404
    assert "nope" in r.json()["detail"]
    r = await admin.post("/api/v1/tasks", json={**body, "users": ["ghost"]})
    assert r.status_code == 404
    assert "ghost" in r.json()["detail"]
    r = await admin.post("/api/v1/tasks", json={**body, "groups": ["nogroup"]})
    assert r.status_code == 404
    assert "nogroup" in r.json()["detail"]
    r = await admin.post("/api/v1/tasks", json={**body, "distribute_in_group": "g"})
    assert r.status_code == 400
    assert "distribute_in_group" in r.json()["detail"]
    r = await admin.post("/api/v1/tasks", json={"template": "glandula_pinealis"})
    assert r.status_code == 422
    assert "content" in r.json()["detail"]
    r = await admin.post("/api/v1/tasks", json={**body, "priority": "high"})
    assert r.status_code == 422
    # Nothing was half-created.
    listed = (await admin.get("/api/v1/tasks", params={"scope": "all"})).json()
    assert listed["total_tasks"] == 0


async def test_reader_sees_only_its_own_and_its_groups_tasks(
    admin: httpx.AsyncClient, make_user: UserFactory
) -> None:
    jdoe = await make_user("jdoe")
    asmith = await make_user("asmith")
    await make_template(admin)
    await make_group(admin, "neuro", ["jdoe"])
    own = await make_task(admin, users=["jdoe"])
    via_group = await make_task(admin, groups=["neuro"])
    other = await make_task(admin, users=["asmith"])

    listed = (await jdoe.get("/api/v1/tasks")).json()
    assert {t["id"] for t in listed["tasks"]} == {own["id"], via_group["id"]}
    assert listed["total_tasks"] == 2
    assert (await jdoe.get(other["uri"])).status_code == 404
    assert (await jdoe.put(other["uri"], json={"status": "done"})).status_code == 404
    assert (await jdoe.put(other["lock"])).status_code == 404
    assert (await asmith.get(own["uri"])).status_code == 404
    # A reader may not look at everything, nor at another reader's list.
    assert (await jdoe.get("/api/v1/tasks", params={"scope": "all"})).status_code == 403
    assert (await jdoe.get("/api/v1/tasks", params={"user": "asmith"})).status_code == 404


async def test_list_filters_and_total(admin: httpx.AsyncClient, make_user: UserFactory) -> None:
    await make_user("jdoe")
    await make_template(admin)
    await make_template(admin, "other")
    for i in range(5):
        await make_task(admin, users=["jdoe"], tags=["a"] + (["b"] if i % 2 else []))
    await make_task(admin, users=["jdoe"], template="other", project="p2", application_name="ViewR")
    tracked = await make_task(admin, users=["jdoe"], tracking_id="L7")
    params = {"user": "jdoe"}
    assert (await admin.get("/api/v1/tasks", params=params)).json()["total_tasks"] == 7
    r = await admin.get("/api/v1/tasks", params={**params, "tag": ["a", "b"]})
    assert r.json()["total_tasks"] == 2
    r = await admin.get("/api/v1/tasks", params={**params, "template": "other"})
    assert r.json()["total_tasks"] == 1
    r = await admin.get("/api/v1/tasks", params={**params, "project": "p2"})
    assert r.json()["total_tasks"] == 1
    r = await admin.get("/api/v1/tasks", params={**params, "application_name": "ViewR"})
    assert r.json()["total_tasks"] == 1
    r = await admin.get("/api/v1/tasks", params={**params, "tracking_id": "L7"})
    assert [t["id"] for t in r.json()["tasks"]] == [tracked["id"]]
    page = (await admin.get("/api/v1/tasks", params={**params, "limit": 2, "offset": 1})).json()
    assert page["total_tasks"] == 7
    assert len(page["tasks"]) == 2
    assert page["offset"] == 1
    assert page["limit"] == 2
    r = await admin.get("/api/v1/tasks", params={**params, "status": "finished"})
    assert r.status_code == 422
    assert "queued, locked, done, aborted, failed" in r.json()["detail"]
    r = await admin.get("/api/v1/tasks", params={**params, "tag": "unknown"})
    assert r.json()["total_tasks"] == 0


async def _two_readers_and_a_group_task(
    admin: httpx.AsyncClient, make_user: UserFactory
) -> tuple[httpx.AsyncClient, httpx.AsyncClient, dict[str, Any]]:
    """jdoe and asmith, members of group neuro, and a queued task of that group."""
    jdoe = await make_user("jdoe")
    asmith = await make_user("asmith")
    await make_template(admin)
    await make_group(admin, "neuro", ["jdoe", "asmith"])
    return jdoe, asmith, await make_task(admin, groups=["neuro"])


async def test_lock_is_exclusive_and_released(
    admin: httpx.AsyncClient, make_user: UserFactory
) -> None:
    jdoe, asmith, task = await _two_readers_and_a_group_task(admin, make_user)

    first = await jdoe.put(task["lock"])
    assert first.status_code == 200
    assert first.json()["username"] == "jdoe"
    assert first.json()["lock_version"] == 1
    assert first.json()["lock_expires_at"] is not None

    second = await asmith.put(task["lock"])
    assert second.status_code == 409
    body = second.json()
    assert body["error"] == "Task already locked!"
    assert body["username"] == "jdoe"
    assert body["lock"] == "/api/v1/users/2"

    # asmith can neither release nor finish jdoe's task.
    assert (await asmith.delete(task["lock"])).status_code == 403
    assert (await asmith.put(task["uri"], json={"status": "done"})).status_code == 409

    renewed = await jdoe.put(task["lock"], json={})
    assert renewed.status_code == 200
    assert renewed.json()["lock_version"] == 1

    released = await jdoe.delete(task["lock"])
    assert released.status_code == 200
    assert released.json()["lock"] is None
    assert (await asmith.put(task["lock"])).json()["lock_version"] == 2


async def test_status_machine(
    admin: httpx.AsyncClient, make_user: UserFactory, clean_app: FastAPI
) -> None:
    jdoe = await make_user("jdoe")
    await make_template(admin)
    task = await make_task(admin, users=["jdoe"])
    uri = task["uri"]
    r = await jdoe.put(uri, json={"status": "finished"})
    assert r.status_code == 422
    assert "queued, locked, done, aborted, failed" in r.json()["detail"]
    assert (await jdoe.put(uri, json={"status": "locked"})).json()[
        "lock_holder"
    ] == "/api/v1/users/2"
    assert (await jdoe.put(uri, json={"status": "done"})).json()["status"] == "done"
    # Repeating done changes and fires nothing.
    before = len(await events(clean_app, task["id"]))
    assert (await jdoe.put(uri, json={"status": "done"})).status_code == 200
    assert len(await events(clean_app, task["id"])) == before
    # A reader cannot reopen; the table forbids done -> locked.
    r = await jdoe.put(uri, json={"status": "queued"})
    assert r.status_code == 403
    assert "task_update_all" in r.json()["detail"]
    r = await jdoe.put(uri, json={"status": "locked"})
    assert r.status_code == 409
    assert "done -> locked" in r.json()["detail"]
    r = await admin.put(uri, json={"status": "queued"})
    assert r.status_code == 200
    assert r.json()["lock_holder"] is None
    types = [e.type for e in await events(clean_app, task["id"])]
    assert types == [
        "task.created",
        "task.locked",
        "task.status.done",
        "task.status.queued",
    ]
    sequences = [e.sequence for e in await events(clean_app, task["id"])]
    assert sequences == sorted(sequences)
    assert len(set(sequences)) == len(sequences)


async def test_reader_may_not_change_other_fields(
    admin: httpx.AsyncClient, make_user: UserFactory
) -> None:
    jdoe = await make_user("jdoe")
    await make_template(admin)
    task = await make_task(admin, users=["jdoe"])
    r = await jdoe.put(task["uri"], json={"priority": 9})
    assert r.status_code == 403
    assert "priority" in r.json()["detail"]
    r = await admin.put(task["uri"], json={"priority": 9, "tags": ["x"], "users": ["admin"]})
    assert r.status_code == 200
    assert r.json()["priority"] == 9
    assert r.json()["users"] == ["/api/v1/users/1"]


async def test_stale_lock_version_is_409(admin: httpx.AsyncClient, make_user: UserFactory) -> None:
    jdoe = await make_user("jdoe")
    await make_template(admin)
    task = await make_task(admin, users=["jdoe"])
    version = (await jdoe.put(task["lock"])).json()["lock_version"]
    r = await jdoe.put(task["uri"], json={"status": "done", "lock_version": version + 1})
    assert r.status_code == 409
    assert "Stale lock_version" in r.json()["detail"]
    r = await jdoe.put(task["uri"], json={"status": "done"}, headers={"If-Match": f'"{version}"'})
    assert r.status_code == 200


async def test_expired_lease_returns_task_and_fences_late_holder(
    admin: httpx.AsyncClient, make_user: UserFactory, clean_app: FastAPI
) -> None:
    jdoe, asmith, task = await _two_readers_and_a_group_task(admin, make_user)
    assert (await jdoe.put(task["lock"])).status_code == 200
    await expire_lock(clean_app, task["id"])
    # Someone else takes it over; the first holder's late done is refused.
    assert (await asmith.put(task["lock"])).status_code == 200
    r = await jdoe.put(task["uri"], json={"status": "done"})
    assert r.status_code == 409
    assert "asmith" in r.json()["detail"]
    types = [e.type for e in await events(clean_app, task["id"])]
    assert types == ["task.created", "task.locked", "task.lock_expired", "task.locked"]

    # When nobody takes the expired task over, the late done is accepted.
    other = await make_task(admin, groups=["neuro"])
    assert (await jdoe.put(other["lock"])).status_code == 200
    await expire_lock(clean_app, other["id"])
    r = await jdoe.put(other["uri"], json={"status": "done"})
    assert r.status_code == 200
    assert r.json()["status"] == "done"


async def test_swept_lease_is_claimed_by_another_and_fences_the_late_holder(
    admin: httpx.AsyncClient, make_user: UserFactory, clean_app: FastAPI
) -> None:
    jdoe, asmith, task = await _two_readers_and_a_group_task(admin, make_user)
    claimed = await jdoe.post("/api/v1/tasks/claim")
    assert claimed.json()["id"] == task["id"]
    assert (await asmith.post("/api/v1/tasks/claim")).status_code == 204
    await expire_lock(clean_app, task["id"])
    # The sweep returns it to the queue; the next claim hands it to someone else.
    assert await sweep_expired_leases(clean_app.state.sessions) == 1
    again = await asmith.post("/api/v1/tasks/claim")
    assert again.status_code == 200, again.text
    assert again.json()["id"] == task["id"]
    assert again.json()["lock_version"] == claimed.json()["lock_version"] + 1
    r = await jdoe.put(task["uri"], json={"status": "done"})
    assert r.status_code == 409
    assert "asmith" in r.json()["detail"]
    assert (await asmith.put(task["uri"], json={"status": "done"})).status_code == 200


async def test_admin_can_force_release(admin: httpx.AsyncClient, make_user: UserFactory) -> None:
    jdoe = await make_user("jdoe")
    await make_template(admin)
    task = await make_task(admin, users=["jdoe"])
    await jdoe.put(task["lock"])
    r = await admin.delete(task["lock"])
    assert r.status_code == 200
    assert r.json()["lock"] is None
    # Locking for another user needs task_update_lock_all.
    assert (await jdoe.put(task["lock"], json={"lock": "admin"})).status_code == 403
    r = await admin.put(task["lock"], json={"lock": "jdoe"})
    assert r.json()["username"] == "jdoe"


async def test_ended_task_cannot_be_locked(
    admin: httpx.AsyncClient, make_user: UserFactory
) -> None:
    jdoe = await make_user("jdoe")
    await make_template(admin)
    task = await make_task(admin, users=["jdoe"])
    await jdoe.put(task["uri"], json={"status": "aborted"})
    r = await jdoe.put(task["lock"])
    assert r.status_code == 409
    assert "aborted" in r.json()["detail"]


async def test_task_without_assignee_goes_to_a_reader_by_weight(
    admin: httpx.AsyncClient, make_user: UserFactory
) -> None:
    await make_template(admin)
    r = await admin.post("/api/v1/tasks", json={"template": "glandula_pinealis", "content": "x"})
    assert r.status_code == 400
    assert "no active user" in r.json()["detail"]
    await make_user("heavy", weight=2)
    await make_user("light", weight=1)
    await make_user("idle", weight=0)
    owners = []
    for _ in range(6):
        owners.append((await make_task(admin))["users"][0])
    assert owners.count("/api/v1/users/2") == 4
    assert owners.count("/api/v1/users/3") == 2


async def test_distribute_in_group_follows_weights(
    admin: httpx.AsyncClient, make_user: UserFactory
) -> None:
    await make_template(admin)
    for name, weight in (("w1", 1), ("w2", 2), ("w3", 3)):
        await make_user(name, weight=weight)
    await make_group(admin, "trio", ["w1", "w2", "w3"])
    owners = [(await make_task(admin, distribute_in_group="trio"))["users"][0] for _ in range(12)]
    assert [owners.count(f"/api/v1/users/{i}") for i in (2, 3, 4)] == [2, 4, 6]


async def test_delete_task(
    admin: httpx.AsyncClient, make_user: UserFactory, clean_app: FastAPI
) -> None:
    jdoe = await make_user("jdoe")
    await make_template(admin)
    task = await make_task(admin, users=["jdoe"])
    assert (await jdoe.delete(task["uri"])).status_code == 403
    assert (await admin.delete(task["uri"])).status_code == 204
    assert (await admin.get(task["uri"])).status_code == 404
    assert [e.type for e in await events(clean_app, task["id"])][-1] == "task.deleted"
