from __future__ import annotations

import httpx
from fastapi import FastAPI
from sqlalchemy import select

from shared.models import User
from tests.conftest import ADMIN, READER_PASSWORD, UserFactory, client_for


async def _token(client: httpx.AsyncClient, username: str, password: str) -> str:
    r = await client.post("/api/v1/auth/token", data={"username": username, "password": password})
    assert r.status_code == 200, r.text
    return str(r.json()["access_token"])


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_create_user_returns_6x_shape_without_password(
    admin: httpx.AsyncClient, clean_app: FastAPI
) -> None:
    r = await admin.post(
        "/api/v1/users",
        json={
            "username": "jdoe",
            "name": "Jane Doe",
            "email": "jane.doe@example.org",
            "password": "s3cret-pass",
            "assignment_weight": 0.5,
        },
    )
    assert r.status_code == 201, r.text
    user = r.json()
    assert user["uri"] == f"/api/v1/users/{user['id']}"
    assert user["tasks"] == user["uri"] + "/tasks"
    assert user["groups"] == user["uri"] + "/groups"
    assert user["active"] is True
    assert user["assignment_weight"] == 0.5
    assert user["roles"] == ["user"]  # a new user is a reader by default
    assert "password" not in user
    assert "s3cret-pass" not in r.text

    async with clean_app.state.sessions() as session:
        stored = await session.scalar(select(User.password_hash).where(User.username == "jdoe"))
    assert stored is not None
    assert stored.startswith("$argon2")

    by_id = await admin.get(user["uri"])
    by_name = await admin.get("/api/v1/users/jdoe")
    assert by_id.json() == by_name.json() == user

    listed = (await admin.get("/api/v1/users")).json()["users"]
    admin_uri = (await admin.get("/api/v1/users/me")).json()["uri"]
    assert listed == [admin_uri, user["uri"]]


async def test_duplicate_username_or_email_is_409_naming_it(
    admin: httpx.AsyncClient, make_user: UserFactory
) -> None:
    await make_user("jdoe", email="jane@example.org")
    dup = await admin.post("/api/v1/users", json={"username": "jdoe", "password": "x"})
    assert dup.status_code == 409
    assert dup.headers["content-type"] == "application/problem+json"
    assert "'jdoe'" in dup.json()["detail"]

    same_mail = await admin.post(
        "/api/v1/users",
        json={"username": "other", "password": "x", "email": "jane@example.org"},
    )
    assert same_mail.status_code == 409
    assert "jane@example.org" in same_mail.json()["detail"]


async def test_invalid_user_fields_are_422_naming_the_field(admin: httpx.AsyncClient) -> None:
    digits = await admin.post("/api/v1/users", json={"username": "1234", "password": "x"})
    assert digits.status_code == 422
    assert "username" in digits.json()["detail"]
    assert "digits" in digits.json()["detail"]

    negative = await admin.post(
        "/api/v1/users", json={"username": "neg", "password": "x", "assignment_weight": -1}
    )
    assert negative.status_code == 422
    assert "assignment_weight" in negative.json()["detail"]

    no_password = await admin.post("/api/v1/users", json={"username": "nopass"})
    assert no_password.status_code == 422
    assert "password" in no_password.json()["detail"]


async def test_reader_cannot_create_users(make_user: UserFactory) -> None:
    reader = await make_user("jdoe")
    r = await reader.post("/api/v1/users", json={"username": "x", "password": "y"})
    assert r.status_code == 403
    assert "user_add" in r.json()["detail"]


async def test_anonymous_caller_gets_401_with_basic_challenge(anon: httpx.AsyncClient) -> None:
    r = await anon.get("/api/v1/users")
    assert r.status_code == 401
    assert r.headers["www-authenticate"].startswith("Basic realm=")


async def test_reader_sees_only_itself(make_user: UserFactory) -> None:
    jdoe = await make_user("jdoe")
    await make_user("asmith")
    me = (await jdoe.get("/api/v1/users/me")).json()

    assert (await jdoe.get("/api/v1/users")).json() == {"users": [me["uri"]]}
    assert (await jdoe.get("/api/v1/users/jdoe")).json() == me

    other = await jdoe.get("/api/v1/users/asmith")
    assert other.status_code == 404
    assert "asmith" in other.json()["detail"]
    assert (await jdoe.get("/api/v1/users/asmith/groups")).status_code == 404
    assert (await jdoe.put("/api/v1/users/asmith", json={"name": "X"})).status_code == 404
    # Not found looks the same whether or not the user exists.
    assert (await jdoe.get("/api/v1/users/nobody")).status_code == 404


async def test_coordinator_reads_everyone(make_user: UserFactory) -> None:
    coordinator = await make_user("coord", roles=("superuser",))
    await make_user("jdoe")
    listed = (await coordinator.get("/api/v1/users")).json()["users"]
    assert len(listed) == 3
    assert listed == sorted(listed, key=lambda u: int(u.rsplit("/", 1)[1]))
    assert (await coordinator.get("/api/v1/users/jdoe")).json()["username"] == "jdoe"


async def test_user_updates_own_profile(make_user: UserFactory) -> None:
    jdoe = await make_user("jdoe")
    r = await jdoe.put("/api/v1/users/jdoe", json={"name": "Jane D.", "email": "jd@example.org"})
    assert r.status_code == 200, r.text
    assert r.json()["name"] == "Jane D."
    assert r.json()["email"] == "jd@example.org"
    me = await jdoe.put("/api/v1/users/me", json={"name": "Jane"})
    assert me.status_code == 200
    assert me.json()["username"] == "jdoe"
    assert me.json()["name"] == "Jane"
    # Sending back unchanged values of fields it may not change is fine.
    again = await jdoe.put("/api/v1/users/jdoe", json={"username": "jdoe", "active": True})
    assert again.status_code == 200


async def test_fields_without_permission_are_403_naming_the_field(
    make_user: UserFactory,
) -> None:
    jdoe = await make_user("jdoe")
    for body, field in (
        ({"assignment_weight": 3}, "assignment_weight"),
        ({"active": False}, "active"),
        ({"username": "janedoe"}, "username"),
    ):
        r = await jdoe.put("/api/v1/users/jdoe", json=body)
        assert r.status_code == 403, body
        assert f"'{field}'" in r.json()["detail"]
        assert r.json()["field"] == field


async def test_coordinator_may_set_weights_but_not_names(make_user: UserFactory) -> None:
    coordinator = await make_user("coord", roles=("superuser",))
    await make_user("jdoe")
    weight = await coordinator.put("/api/v1/users/jdoe", json={"assignment_weight": 2.5})
    assert weight.status_code == 200
    assert weight.json()["assignment_weight"] == 2.5

    name = await coordinator.put("/api/v1/users/jdoe", json={"name": "Renamed"})
    assert name.status_code == 403
    assert "'name'" in name.json()["detail"]
    assert "user_update_all" in name.json()["detail"]

    negative = await coordinator.put("/api/v1/users/jdoe", json={"assignment_weight": -0.5})
    assert negative.status_code == 422
    assert "assignment_weight" in negative.json()["detail"]


async def test_admin_renames_user_and_conflicts_are_409(
    admin: httpx.AsyncClient, make_user: UserFactory
) -> None:
    await make_user("jdoe")
    await make_user("asmith")
    renamed = await admin.put("/api/v1/users/jdoe", json={"username": "janedoe"})
    assert renamed.status_code == 200
    assert (await admin.get("/api/v1/users/janedoe")).status_code == 200
    assert (await admin.get("/api/v1/users/jdoe")).status_code == 404

    taken = await admin.put("/api/v1/users/janedoe", json={"username": "asmith"})
    assert taken.status_code == 409
    assert "asmith" in taken.json()["detail"]
    mail = await admin.put("/api/v1/users/janedoe", json={"email": "asmith@example.org"})
    assert mail.status_code == 409
    assert "asmith@example.org" in mail.json()["detail"]


async def test_password_change_ends_old_password_and_tokens(
    clean_app: FastAPI, anon: httpx.AsyncClient, make_user: UserFactory
) -> None:
    jdoe = await make_user("jdoe")
    token = await _token(anon, "jdoe", READER_PASSWORD)
    assert (await anon.get("/api/v1/users/me", headers=_bearer(token))).status_code == 200

    r = await jdoe.put("/api/v1/users/jdoe", json={"password": "new-password"})
    assert r.status_code == 200

    assert (await jdoe.get("/api/v1/users/me")).status_code == 401
    revoked = await anon.get("/api/v1/users/me", headers=_bearer(token))
    assert revoked.status_code == 401
    async with client_for(clean_app, ("jdoe", "new-password")) as renewed:
        assert (await renewed.get("/api/v1/users/me")).status_code == 200
    new_token = await _token(anon, "jdoe", "new-password")
    assert (await anon.get("/api/v1/users/me", headers=_bearer(new_token))).status_code == 200


async def test_delete_deactivates_and_stops_login(
    admin: httpx.AsyncClient, anon: httpx.AsyncClient, make_user: UserFactory
) -> None:
    jdoe = await make_user("jdoe")
    token = await _token(anon, "jdoe", READER_PASSWORD)
    r = await admin.delete("/api/v1/users/jdoe")
    assert r.status_code == 200
    assert r.json()["active"] is False
    assert r.json()["username"] == "jdoe"

    assert (await jdoe.get("/api/v1/users/me")).status_code == 401
    assert (await anon.get("/api/v1/users/me", headers=_bearer(token))).status_code == 401
    login = await anon.post(
        "/api/v1/auth/token", data={"username": "jdoe", "password": READER_PASSWORD}
    )
    assert login.status_code == 401
    # The user is kept, deactivated.
    assert (await admin.get("/api/v1/users/jdoe")).json()["active"] is False


async def test_reader_cannot_delete_users(make_user: UserFactory) -> None:
    jdoe = await make_user("jdoe")
    r = await jdoe.delete(f"/api/v1/users/{ADMIN[0]}")
    assert r.status_code == 403
    assert "user_delete" in r.json()["detail"]


async def test_user_groups_lists_its_memberships(
    admin: httpx.AsyncClient, make_user: UserFactory
) -> None:
    jdoe = await make_user("jdoe")
    first = await admin.post("/api/v1/groups", json={"groupname": "neuro", "members": ["jdoe"]})
    await admin.post("/api/v1/groups", json={"groupname": "other"})
    third = await admin.post("/api/v1/groups", json={"groupname": "qa", "members": ["jdoe"]})
    expected = {"groups": [first.json()["uri"], third.json()["uri"]]}
    assert (await jdoe.get("/api/v1/users/jdoe/groups")).json() == expected
    assert (await admin.get("/api/v1/users/jdoe/groups")).json() == expected


async def test_a_new_user_is_a_reader_unless_told_otherwise(
    admin: httpx.AsyncClient, make_user: UserFactory
) -> None:
    body = {"username": "newbie", "password": "pw-123456", "email": "newbie@example.org"}
    r = await admin.post("/api/v1/users", json=body)
    assert r.status_code == 201
    assert r.json()["roles"] == ["user"]
    r = await admin.post(
        "/api/v1/users",
        json={**body, "username": "coord", "email": "c@example.org", "roles": ["superuser"]},
    )
    assert r.json()["roles"] == ["superuser"]
    r = await admin.post(
        "/api/v1/users",
        json={**body, "username": "x", "email": "x@example.org", "roles": ["nope"]},
    )
    assert r.status_code == 404
    assert "nope" in r.json()["detail"]
    # Without roles_manage, only the default role can be given.
    r = await admin.post("/api/v1/roles", json={"name": "recruiter", "permissions": ["user_add"]})
    assert r.status_code == 201, r.text
    recruiter = await make_user("recruiter", roles=("recruiter",))
    r = await recruiter.post(
        "/api/v1/users",
        json={**body, "username": "y", "email": "y@example.org", "roles": ["admin"]},
    )
    assert r.status_code == 403
    assert "roles_manage" in r.json()["detail"]
    r = await recruiter.post(
        "/api/v1/users", json={**body, "username": "z", "email": "z@example.org"}
    )
    assert r.status_code == 201


async def test_the_last_administrator_cannot_lock_everyone_out(
    admin: httpx.AsyncClient, make_user: UserFactory
) -> None:
    r = await admin.put("/api/v1/users/admin", json={"active": False})
    assert r.status_code == 409
    assert "roles_manage" in r.json()["detail"]
    assert (await admin.delete("/api/v1/users/admin")).status_code == 409
    assert (await admin.delete("/api/v1/users/admin/roles/admin")).status_code == 409
    r = await admin.put("/api/v1/roles/admin", json={"permissions": ["task_read"]})
    assert r.status_code == 409
    # Still an administrator.
    assert (await admin.get("/api/v1/users/me")).json()["roles"] == ["admin"]
    # With a second administrator the first may step down.
    await make_user("deputy", roles=("admin",))
    assert (await admin.delete("/api/v1/users/admin/roles/admin")).status_code == 200


async def test_a_reader_cannot_probe_other_users_through_task_lists(
    make_user: UserFactory,
) -> None:
    jdoe = await make_user("jdoe")
    await make_user("asmith")
    for path in ("/api/v1/users/asmith/tasks", "/api/v1/users/nobody/tasks"):
        assert (await jdoe.get(path)).status_code == 404, path
    for user in ("asmith", "nobody"):
        r = await jdoe.get("/api/v1/tasks", params={"user": user})
        assert r.status_code == 404, user
