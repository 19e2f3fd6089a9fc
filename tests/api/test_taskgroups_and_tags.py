from __future__ import annotations

import httpx
from fastapi import FastAPI

from tests.api.helpers import events, make_group, make_template
from tests.conftest import UserFactory


def _tasks(n: int) -> list[dict[str, object]]:
    return [
        {"template": "glandula_pinealis", "content": {"n": i}, "tracking_id": f"L{i}"}
        for i in range(n)
    ]


async def test_taskgroup_same_gives_every_task_to_one_member(
    admin: httpx.AsyncClient, make_user: UserFactory
) -> None:
    await make_template(admin)
    await make_user("jdoe")
    await make_user("asmith")
    await make_group(admin, "neuro", ["jdoe", "asmith"])
    r = await admin.post(
        "/api/v1/taskgroups",
        json={
            "label": "batch-1",
            "tasks": _tasks(3),
            "distribute_in_group": "neuro",
            "distribute_method": "same",
            "callback_url": "http://studygovernor/cb",
        },
    )
    assert r.status_code == 201, r.text
    group = r.json()
    assert group["status"] == "queued"
    assert len(group["tasks"]) == 3
    owners = {tuple((await admin.get(t["uri"])).json()["users"]) for t in group["tasks"]}
    assert len(owners) == 1
    listed = (await admin.get("/api/v1/taskgroups")).json()["taskgroups"]
    assert listed == [
        {"uri": group["uri"], "id": group["id"], "label": "batch-1", "status": "queued"}
    ]
    assert (await admin.get("/api/v1/taskgroups/batch-1")).json() == group


async def test_taskgroup_unique_needs_enough_members(
    admin: httpx.AsyncClient, make_user: UserFactory
) -> None:
    await make_template(admin)
    await make_user("jdoe")
    await make_user("asmith")
    await make_group(admin, "neuro", ["jdoe", "asmith"])
    body = {"label": "u", "distribute_in_group": "neuro", "distribute_method": "unique"}
    r = await admin.post("/api/v1/taskgroups", json={**body, "tasks": _tasks(3)})
    assert r.status_code == 400
    assert "2 eligible member" in r.json()["detail"]
    r = await admin.post("/api/v1/taskgroups", json={**body, "tasks": _tasks(2)})
    assert r.status_code == 201
    owners = [(await admin.get(t["uri"])).json()["users"][0] for t in r.json()["tasks"]]
    assert sorted(owners) == ["/api/v1/users/2", "/api/v1/users/3"]


async def test_taskgroup_done_when_all_tasks_done_announced_once(
    admin: httpx.AsyncClient, make_user: UserFactory, clean_app: FastAPI
) -> None:
    await make_template(admin)
    jdoe = await make_user("jdoe")
    await make_group(admin, "neuro", ["jdoe"])
    r = await admin.post(
        "/api/v1/taskgroups",
        json={"label": "g", "tasks": _tasks(2), "distribute_in_group": "neuro"},
    )
    group = r.json()
    first, second = (t["uri"] for t in group["tasks"])
    await jdoe.put(first, json={"status": "done"})
    assert (await admin.get(group["uri"])).json()["status"] == "queued"
    await jdoe.put(second, json={"status": "done"})
    await jdoe.put(second, json={"status": "done"})
    assert (await admin.get(group["uri"])).json()["status"] == "done"
    announced = [e for e in await events(clean_app) if e.type.startswith("taskgroup.")]
    assert [e.type for e in announced] == ["taskgroup.done"]


async def test_taskgroup_aborted_when_a_task_is_aborted(
    admin: httpx.AsyncClient, make_user: UserFactory
) -> None:
    await make_template(admin)
    jdoe = await make_user("jdoe")
    r = await admin.post(
        "/api/v1/taskgroups",
        json={"label": "g", "tasks": [{**t, "users": ["jdoe"]} for t in _tasks(2)]},
    )
    group = r.json()
    await jdoe.put(group["tasks"][0]["uri"], json={"status": "aborted"})
    assert (await admin.get(group["uri"])).json()["status"] == "aborted"
    dup = await admin.post("/api/v1/taskgroups", json={"label": "g", "tasks": _tasks(1)})
    assert dup.status_code == 409


async def test_tags_list_rename_and_tasks(admin: httpx.AsyncClient, make_user: UserFactory) -> None:
    await make_template(admin)
    jdoe = await make_user("jdoe")
    r = await admin.post(
        "/api/v1/tasks",
        json={"template": "glandula_pinealis", "content": "x", "users": ["jdoe"], "tags": ["qa"]},
    )
    task = r.json()
    tags = (await jdoe.get("/api/v1/tags")).json()["tags"]
    assert [t["name"] for t in tags] == ["qa"]
    tag_uri = tags[0]["uri"]
    got = (await jdoe.get(tag_uri)).json()
    assert got["tasks"] == [task["uri"]]
    assert (await jdoe.get("/api/v1/tags/qa/tasks")).json()["tasks"][0]["uri"] == task["uri"]
    assert (await jdoe.put(tag_uri, json={"name": "manual_qa"})).status_code == 403
    renamed = await admin.put(tag_uri, json={"name": "manual_qa"})
    assert renamed.status_code == 200
    assert renamed.json()["name"] == "manual_qa"
    assert (await admin.post("/api/v1/tags", json={"name": "manual_qa"})).status_code == 409
    assert (await admin.get("/api/v1/tags/qa")).status_code == 404
    assert (await admin.delete(tag_uri)).status_code == 204
    assert (await admin.get(task["uri"])).json()["tags"] == []


async def test_reader_sees_only_its_own_tasks_of_a_taskgroup(
    admin: httpx.AsyncClient, make_user: UserFactory
) -> None:
    await make_template(admin)
    jdoe = await make_user("jdoe")
    asmith = await make_user("asmith")
    await make_user("bkim")
    items = [
        {**_tasks(1)[0], "users": ["jdoe"]},
        {**_tasks(2)[1], "users": ["asmith"]},
    ]
    group = (await admin.post("/api/v1/taskgroups", json={"label": "g", "tasks": items})).json()
    mine = (await jdoe.get(group["uri"])).json()
    assert [t["uri"] for t in mine["tasks"]] == [group["tasks"][0]["uri"]]
    theirs = (await asmith.get("/api/v1/taskgroups/g")).json()
    assert [t["uri"] for t in theirs["tasks"]] == [group["tasks"][1]["uri"]]
    bkim = await make_user("bkim2")
    assert (await bkim.get(group["uri"])).status_code == 404
    assert (await bkim.get("/api/v1/taskgroups")).json() == {"taskgroups": []}
    assert len((await jdoe.get("/api/v1/taskgroups")).json()["taskgroups"]) == 1


async def test_deleting_the_last_open_task_completes_the_group(
    admin: httpx.AsyncClient, make_user: UserFactory, clean_app: FastAPI
) -> None:
    await make_template(admin)
    jdoe = await make_user("jdoe")
    r = await admin.post(
        "/api/v1/taskgroups",
        json={"label": "g", "tasks": [{**t, "users": ["jdoe"]} for t in _tasks(2)]},
    )
    group = r.json()
    first, second = (t["uri"] for t in group["tasks"])
    assert (await jdoe.put(first, json={"status": "done"})).status_code == 200
    assert (await admin.delete(second)).status_code == 204
    assert (await admin.get(group["uri"])).json()["status"] == "done"
    announced = [e.type for e in await events(clean_app) if e.type.startswith("taskgroup.")]
    assert announced == ["taskgroup.done"]
