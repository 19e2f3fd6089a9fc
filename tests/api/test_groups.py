from __future__ import annotations

import httpx
from fastapi import FastAPI

from shared.models import Group, Task, TaskGroupLink, TaskTemplate
from tests.conftest import UserFactory


async def _uri(client: httpx.AsyncClient, username: str) -> str:
    return str((await client.get(f"/api/v1/users/{username}")).json()["uri"])


async def test_create_group_with_members_returns_6x_shape(
    admin: httpx.AsyncClient, make_user: UserFactory
) -> None:
    await make_user("jdoe", weight=1.0)
    await make_user("asmith", weight=0.5)
    jdoe, asmith = await _uri(admin, "jdoe"), await _uri(admin, "asmith")
    r = await admin.post(
        "/api/v1/groups",
        json={
            "groupname": "neuroradiology",
            "name": "Neuroradiology readers",
            # by username, by uri and by id; the order given does not matter
            "members": ["asmith", jdoe, int(asmith.rsplit("/", 1)[1])],
        },
    )
    assert r.status_code == 201, r.text
    group = r.json()
    assert group["uri"] == f"/api/v1/groups/{group['id']}"
    assert group["groupname"] == "neuroradiology"
    assert group["name"] == "Neuroradiology readers"
    assert group["tasks"] == group["uri"] + "/tasks"
    assert group["users"] == group["uri"] + "/users"
    assert group["members"] == [
        {
            "user": jdoe,
            "username": "jdoe",
            "assignment_weight": 1.0,
            "active": True,
            "visible_queued_tasks": 0,
        },
        {
            "user": asmith,
            "username": "asmith",
            "assignment_weight": 0.5,
            "active": True,
            "visible_queued_tasks": 0,
        },
    ]
    assert group["queued_tasks"] == 0
    assert "create_time" in group
    assert (await admin.get("/api/v1/groups/neuroradiology")).json() == group
    assert (await admin.get(group["uri"])).json() == group
    assert (await admin.get(group["users"])).json() == {"users": [jdoe, asmith]}
    assert (await admin.get("/api/v1/groups")).json() == {"groups": [group["uri"]]}


async def test_group_input_errors_name_the_offender(
    admin: httpx.AsyncClient, make_user: UserFactory
) -> None:
    await make_user("jdoe")
    assert (await admin.post("/api/v1/groups", json={"groupname": "neuro"})).status_code == 201

    dup = await admin.post("/api/v1/groups", json={"groupname": "neuro"})
    assert dup.status_code == 409
    assert "'neuro'" in dup.json()["detail"]

    unknown = await admin.post(
        "/api/v1/groups", json={"groupname": "qa", "members": ["jdoe", "ghost"]}
    )
    assert unknown.status_code == 404
    assert "ghost" in unknown.json()["detail"]
    assert (await admin.get("/api/v1/groups/qa")).status_code == 404

    digits = await admin.post("/api/v1/groups", json={"groupname": "2026"})
    assert digits.status_code == 422
    assert "groupname" in digits.json()["detail"]
    assert "digits" in digits.json()["detail"]


async def test_reader_sees_only_its_own_groups(
    admin: httpx.AsyncClient, make_user: UserFactory
) -> None:
    jdoe = await make_user("jdoe")
    coordinator = await make_user("coord", roles=("superuser",))
    mine = await admin.post("/api/v1/groups", json={"groupname": "mine", "members": ["jdoe"]})
    await admin.post("/api/v1/groups", json={"groupname": "theirs"})

    assert (await jdoe.get("/api/v1/groups")).json() == {"groups": [mine.json()["uri"]]}
    assert (await jdoe.get("/api/v1/groups/mine")).status_code == 200
    hidden = await jdoe.get("/api/v1/groups/theirs")
    assert hidden.status_code == 404
    assert "theirs" in hidden.json()["detail"]
    assert (await jdoe.get("/api/v1/groups/theirs/users")).status_code == 404

    assert len((await coordinator.get("/api/v1/groups")).json()["groups"]) == 2
    assert (await coordinator.get("/api/v1/groups/theirs")).status_code == 200


async def test_reader_cannot_create_change_or_delete_groups(
    admin: httpx.AsyncClient, make_user: UserFactory
) -> None:
    jdoe = await make_user("jdoe")
    await admin.post("/api/v1/groups", json={"groupname": "mine", "members": ["jdoe"]})
    for response, permission in (
        (await jdoe.post("/api/v1/groups", json={"groupname": "x"}), "group_add"),
        (await jdoe.put("/api/v1/groups/mine", json={"name": "x"}), "group_update"),
        (await jdoe.put("/api/v1/groups/mine/users/admin"), "group_update"),
        (await jdoe.delete("/api/v1/groups/mine"), "group_delete"),
    ):
        assert response.status_code == 403
        assert permission in response.json()["detail"]


async def test_update_renames_and_replaces_members(
    admin: httpx.AsyncClient, make_user: UserFactory
) -> None:
    for name in ("jdoe", "asmith", "bkim"):
        await make_user(name)
    await admin.post("/api/v1/groups", json={"groupname": "neuro", "members": ["jdoe", "asmith"]})

    renamed = await admin.put("/api/v1/groups/neuro", json={"groupname": "neuroradiology"})
    assert renamed.status_code == 200
    assert [m["username"] for m in renamed.json()["members"]] == ["jdoe", "asmith"]
    assert (await admin.get("/api/v1/groups/neuro")).status_code == 404

    replaced = await admin.put(
        "/api/v1/groups/neuroradiology", json={"name": "Neuro", "members": ["bkim", "asmith"]}
    )
    assert replaced.status_code == 200
    assert replaced.json()["name"] == "Neuro"
    assert [m["username"] for m in replaced.json()["members"]] == ["asmith", "bkim"]

    await admin.post("/api/v1/groups", json={"groupname": "qa"})
    clash = await admin.put("/api/v1/groups/qa", json={"groupname": "neuroradiology"})
    assert clash.status_code == 409
    assert "neuroradiology" in clash.json()["detail"]
    unknown = await admin.put("/api/v1/groups/qa", json={"members": ["nobody"]})
    assert unknown.status_code == 404
    assert "nobody" in unknown.json()["detail"]


async def test_membership_put_and_delete_are_idempotent(
    admin: httpx.AsyncClient, make_user: UserFactory
) -> None:
    jdoe = await make_user("jdoe")
    coordinator = await make_user("coord", roles=("superuser",))
    group = (await admin.post("/api/v1/groups", json={"groupname": "neuro"})).json()
    user_uri = await _uri(admin, "jdoe")
    assert (await jdoe.get("/api/v1/groups/neuro")).status_code == 404

    for _ in range(2):
        added = await coordinator.put("/api/v1/groups/neuro/users/jdoe")
        assert added.status_code == 200
        assert added.json() == {"group": group["uri"], "user": user_uri, "member": True}
    assert (await jdoe.get("/api/v1/groups/neuro")).status_code == 200
    assert (await admin.get("/api/v1/groups/neuro/users")).json() == {"users": [user_uri]}
    assert (await jdoe.get("/api/v1/users/jdoe/groups")).json() == {"groups": [group["uri"]]}

    for _ in range(2):
        removed = await coordinator.delete(f"{group['uri']}/users/{user_uri.rsplit('/', 1)[1]}")
        assert removed.status_code == 200
        assert removed.json() == {"group": group["uri"], "user": user_uri, "member": False}
    assert (await admin.get("/api/v1/groups/neuro/users")).json() == {"users": []}
    assert (await jdoe.get("/api/v1/groups/neuro")).status_code == 404

    ghost = await admin.put("/api/v1/groups/neuro/users/ghost")
    assert ghost.status_code == 404
    assert "ghost" in ghost.json()["detail"]


async def test_delete_group(
    admin: httpx.AsyncClient, make_user: UserFactory, clean_app: FastAPI
) -> None:
    await make_user("jdoe")
    await admin.post("/api/v1/groups", json={"groupname": "empty", "members": ["jdoe"]})
    assert (await admin.delete("/api/v1/groups/empty")).status_code == 204
    assert (await admin.get("/api/v1/groups/empty")).status_code == 404
    assert (await admin.get("/api/v1/users/jdoe/groups")).json() == {"groups": []}

    busy = (await admin.post("/api/v1/groups", json={"groupname": "busy"})).json()
    async with clean_app.state.sessions() as session:
        template = TaskTemplate(label="t", content="a: 1")
        session.add(template)
        await session.flush()
        assert template.id is not None
        task = Task(project="p", template_id=template.id, content="{}")
        session.add(task)
        await session.flush()
        assert task.id is not None
        session.add(TaskGroupLink(task_id=task.id, group_id=busy["id"]))
        await session.commit()

    refused = await admin.delete("/api/v1/groups/busy")
    assert refused.status_code == 409
    assert "busy" in refused.json()["detail"]
    assert "1 task" in refused.json()["detail"]
    async with clean_app.state.sessions() as session:
        assert await session.get(Group, busy["id"]) is not None
