from __future__ import annotations

from datetime import datetime
from typing import Any

import httpx

from shared.permissions import BUILTIN_ROLES
from tests.conftest import UserFactory


def _time(role: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(role["update_datetime"])


async def test_builtin_roles_are_readable_by_any_user(make_user: UserFactory) -> None:
    reader = await make_user("jdoe")
    r = await reader.get("/api/v1/roles")
    assert r.status_code == 200
    roles = r.json()["roles"]
    assert [role["name"] for role in roles] == ["admin", "superuser", "user"]
    by_name = {role["name"]: role for role in roles}
    for name, (_, permissions) in BUILTIN_ROLES.items():
        assert set(by_name[name]["permissions"]) == set(permissions)
    user_role = by_name["user"]
    assert user_role["uri"] == f"/api/v1/roles/{user_role['id']}"
    assert (await reader.get("/api/v1/roles/user")).json() == user_role
    assert (await reader.get(user_role["uri"])).json() == user_role

    missing = await reader.get("/api/v1/roles/nosuchrole")
    assert missing.status_code == 404
    assert "nosuchrole" in missing.json()["detail"]


async def test_create_update_and_delete_a_role(admin: httpx.AsyncClient) -> None:
    created = await admin.post(
        "/api/v1/roles",
        json={
            "name": "qa",
            "description": "quality assurance",
            "permissions": ["task_read_all", "task_update_status_all"],
        },
    )
    assert created.status_code == 201, created.text
    role = created.json()
    assert role["permissions"] == ["task_read_all", "task_update_status_all"]

    updated = await admin.put(
        "/api/v1/roles/qa", json={"name": "qa2", "permissions": ["task_read_all"]}
    )
    assert updated.status_code == 200
    assert updated.json()["name"] == "qa2"
    assert updated.json()["permissions"] == ["task_read_all"]
    assert updated.json()["description"] == "quality assurance"
    assert _time(updated.json()) > _time(role)

    assert (await admin.delete("/api/v1/roles/qa2")).status_code == 204
    assert (await admin.get(role["uri"])).status_code == 404


async def test_unknown_permissions_are_422_listing_them(admin: httpx.AsyncClient) -> None:
    r = await admin.post(
        "/api/v1/roles",
        json={"name": "bad", "permissions": ["task_read", "fly", "teleport"]},
    )
    assert r.status_code == 422
    detail = r.json()["detail"]
    assert "fly" in detail
    assert "teleport" in detail
    assert "task_read," not in detail

    update = await admin.put("/api/v1/roles/user", json={"permissions": ["nope"]})
    assert update.status_code == 422
    assert "nope" in update.json()["detail"]


async def test_role_name_rules(admin: httpx.AsyncClient) -> None:
    dup = await admin.post("/api/v1/roles", json={"name": "user"})
    assert dup.status_code == 409
    assert "'user'" in dup.json()["detail"]
    digits = await admin.post("/api/v1/roles", json={"name": "42"})
    assert digits.status_code == 422
    assert "digits" in digits.json()["detail"]


async def test_builtin_roles_may_be_edited_but_not_deleted_or_renamed(
    admin: httpx.AsyncClient,
) -> None:
    permissions = [*BUILTIN_ROLES["user"][1], "tag_add"]
    edited = await admin.put("/api/v1/roles/user", json={"permissions": permissions})
    assert edited.status_code == 200
    assert "tag_add" in edited.json()["permissions"]

    deleted = await admin.delete("/api/v1/roles/user")
    assert deleted.status_code == 409
    assert "built in" in deleted.json()["detail"]
    renamed = await admin.put("/api/v1/roles/admin", json={"name": "boss"})
    assert renamed.status_code == 409
    assert (await admin.get("/api/v1/roles/admin")).status_code == 200


async def test_managing_roles_needs_roles_manage(make_user: UserFactory) -> None:
    coordinator = await make_user("coord", roles=("superuser",))
    for response in (
        await coordinator.post("/api/v1/roles", json={"name": "x"}),
        await coordinator.put("/api/v1/roles/user", json={"description": "x"}),
        await coordinator.delete("/api/v1/roles/superuser"),
        await coordinator.put("/api/v1/users/coord/roles/admin"),
        await coordinator.delete("/api/v1/users/coord/roles/superuser"),
    ):
        assert response.status_code == 403
        assert "roles_manage" in response.json()["detail"]


async def test_giving_and_taking_a_role_is_idempotent_and_takes_effect(
    admin: httpx.AsyncClient, make_user: UserFactory
) -> None:
    jdoe = await make_user("jdoe")
    await make_user("asmith")
    assert (await jdoe.get("/api/v1/users/asmith")).status_code == 404
    before = (await admin.get("/api/v1/roles/superuser")).json()

    user_uri = (await admin.get("/api/v1/users/jdoe")).json()["uri"]
    for _ in range(2):
        given = await admin.put("/api/v1/users/jdoe/roles/superuser")
        assert given.status_code == 200
        assert given.json() == {"role": before["uri"], "user": user_uri, "has_role": True}
    after = (await admin.get("/api/v1/roles/superuser")).json()
    assert _time(after) > _time(before)
    assert (await jdoe.get("/api/v1/users/asmith")).status_code == 200
    assert "superuser" in (await admin.get("/api/v1/users/jdoe")).json()["roles"]

    for _ in range(2):
        taken = await admin.delete(f"{user_uri}/roles/{before['id']}")
        assert taken.status_code == 200
        assert taken.json() == {"role": before["uri"], "user": user_uri, "has_role": False}
    assert (await jdoe.get("/api/v1/users/asmith")).status_code == 404


async def test_assigning_unknown_role_or_user_is_404_naming_it(
    admin: httpx.AsyncClient, make_user: UserFactory
) -> None:
    await make_user("jdoe")
    role = await admin.put("/api/v1/users/jdoe/roles/wizard")
    assert role.status_code == 404
    assert "wizard" in role.json()["detail"]
    user = await admin.put("/api/v1/users/ghost/roles/user")
    assert user.status_code == 404
    assert "ghost" in user.json()["detail"]


async def test_deleting_a_role_takes_it_from_its_users(
    admin: httpx.AsyncClient, make_user: UserFactory
) -> None:
    created = await admin.post(
        "/api/v1/roles", json={"name": "readers_all", "permissions": ["user_read_all"]}
    )
    assert created.status_code == 201
    jdoe = await make_user("jdoe", roles=("user", "readers_all"))
    assert len((await jdoe.get("/api/v1/users")).json()["users"]) == 2
    assert (await admin.delete("/api/v1/roles/readers_all")).status_code == 204
    assert len((await jdoe.get("/api/v1/users")).json()["users"]) == 1
    assert (await admin.get("/api/v1/users/jdoe")).json()["roles"] == ["user"]
