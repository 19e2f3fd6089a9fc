"""The claim's hot path (one statement on PostgreSQL) answers as every other path does.

On PostgreSQL the claim checks the caller's credential, picks and locks the task and writes
its event in one statement, with the credential cached from earlier requests; these tests
show that it still refuses what the rest of the API refuses, and returns what GET returns.
"""

from __future__ import annotations

import json

import httpx
from fastapi import FastAPI

from tests.api.helpers import events, make_group, make_task, make_template
from tests.conftest import READER_PASSWORD, UserFactory, client_for


async def _token(anon: httpx.AsyncClient, username: str, password: str = READER_PASSWORD) -> str:
    r = await anon.post("/api/v1/auth/token", data={"username": username, "password": password})
    assert r.status_code == 200, r.text
    return str(r.json()["access_token"])


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_claim_returns_what_get_returns(
    admin: httpx.AsyncClient, make_user: UserFactory, clean_app: FastAPI
) -> None:
    reader = await make_user("jdoe")
    await make_user("asmith")
    await make_template(admin)
    await make_group(admin, "neuro", ["jdoe", "asmith"])
    created = await make_task(
        admin,
        users=["jdoe"],
        groups=["neuro"],
        tags=["zeta", "Alpha", "beta"],
        callback_url="http://xnat.example.org/callback",
        callback_content={"a": 1},
        application_name="ViewR",
        application_version="5.2",
        tracking_id="L42",
        priority=3,
    )
    claimed = await reader.post("/api/v1/tasks/claim", json={"application_name": "ViewR"})
    assert claimed.status_code == 200, claimed.text
    assert claimed.headers["content-type"] == "application/json"
    got = await reader.get(created["uri"])
    assert claimed.json() == got.json()
    body = claimed.json()
    assert body["status"] == "locked"
    assert body["lock_version"] == 1
    assert len(body["tags"]) == 3
    assert body["users_via_group"] == ["/api/v1/users/2", "/api/v1/users/3"]

    # The event carries the snapshot the other paths write: tags in order, the holder.
    locked = [e for e in await events(clean_app, created["id"]) if e.type == "task.locked"]
    assert len(locked) == 1
    assert locked[0].sequence == 2
    envelope = json.loads(locked[0].payload)
    assert list(envelope) == ["id", "type", "occurred_at", "sequence", "actor", "task"]
    assert envelope["id"] == locked[0].event_id
    assert envelope["type"] == "task.locked"
    assert envelope["sequence"] == 2
    assert envelope["actor"] == "jdoe"
    assert envelope["task"] == {
        "id": created["id"],
        "uri": f"/api/v1/tasks/{created['id']}",
        "project": "pinealis",
        "template": "glandula_pinealis",
        "status": "locked",
        "previous_status": "queued",
        "lock_holder": "jdoe",
        "lock_version": 1,
        "tags": ["Alpha", "beta", "zeta"],
        "tracking_id": "L42",
        "callback_url": "http://xnat.example.org/callback",
        "taskgroup_id": None,
    }
    assert '"lock_holder":"jdoe"' in locked[0].payload


async def test_claim_refuses_a_deactivated_users_token_and_password(
    admin: httpx.AsyncClient, anon: httpx.AsyncClient, make_user: UserFactory
) -> None:
    reader = await make_user("jdoe")
    await make_template(admin)
    for _ in range(3):
        await make_task(admin, users=["jdoe"])
    token = await _token(anon, "jdoe")
    # Both credentials are used once, so both are cached when the user is deactivated.
    assert (await reader.post("/api/v1/tasks/claim")).status_code == 200
    assert (await anon.post("/api/v1/tasks/claim", headers=_bearer(token))).status_code == 200

    assert (await admin.delete("/api/v1/users/jdoe")).status_code == 200

    by_token = await anon.post("/api/v1/tasks/claim", headers=_bearer(token))
    assert by_token.status_code == 401
    assert by_token.headers["content-type"] == "application/problem+json"
    assert by_token.json()["detail"] == "Token revoked"
    by_password = await reader.post("/api/v1/tasks/claim")
    assert by_password.status_code == 401
    assert by_password.json()["detail"] == "Invalid username or password"
    listed = await admin.get("/api/v1/tasks", params={"scope": "all", "status": "queued"})
    assert listed.json()["total_tasks"] == 1


async def test_claim_refuses_old_credentials_after_a_password_change(
    clean_app: FastAPI, admin: httpx.AsyncClient, anon: httpx.AsyncClient, make_user: UserFactory
) -> None:
    reader = await make_user("jdoe")
    await make_template(admin)
    for _ in range(3):
        await make_task(admin, users=["jdoe"])
    token = await _token(anon, "jdoe")
    assert (await reader.post("/api/v1/tasks/claim")).status_code == 200
    assert (await anon.post("/api/v1/tasks/claim", headers=_bearer(token))).status_code == 200

    r = await admin.put("/api/v1/users/jdoe", json={"password": "new-password"})
    assert r.status_code == 200

    assert (await anon.post("/api/v1/tasks/claim", headers=_bearer(token))).status_code == 401
    assert (await reader.post("/api/v1/tasks/claim")).status_code == 401
    async with client_for(clean_app, ("jdoe", "new-password")) as renewed:
        claimed = await renewed.post("/api/v1/tasks/claim")
        assert claimed.status_code == 200, claimed.text
        assert claimed.json()["lock_holder"] == "/api/v1/users/2"
        # Cached now: the same credential again, then nothing left.
        assert (await renewed.post("/api/v1/tasks/claim")).status_code == 204


async def test_claim_by_email_login_and_bad_credentials(
    admin: httpx.AsyncClient, anon: httpx.AsyncClient, make_user: UserFactory, clean_app: FastAPI
) -> None:
    await make_user("jdoe", email="jane@example.org")
    await make_template(admin)
    task = await make_task(admin, users=["jdoe"])
    async with client_for(clean_app, ("jane@example.org", READER_PASSWORD)) as by_email:
        claimed = await by_email.post("/api/v1/tasks/claim")
        assert claimed.status_code == 200, claimed.text
        assert claimed.json()["id"] == task["id"]
        assert (await by_email.post("/api/v1/tasks/claim")).status_code == 204
    async with client_for(clean_app, ("jdoe", "wrong-password")) as wrong:
        refused = await wrong.post("/api/v1/tasks/claim")
        assert refused.status_code == 401
        assert refused.json()["detail"] == "Invalid username or password"
    missing = await anon.post("/api/v1/tasks/claim")
    assert missing.status_code == 401
    assert "Authentication required" in missing.json()["detail"]
    forged = await anon.post("/api/v1/tasks/claim", headers=_bearer("not.a.token"))
    assert forged.status_code == 401
    assert forged.json()["detail"] == "Invalid token"


async def test_claim_needs_a_role_that_may_claim(
    admin: httpx.AsyncClient, anon: httpx.AsyncClient, make_user: UserFactory
) -> None:
    await make_user("viewer", roles=())
    await make_template(admin)
    await make_task(admin, users=["viewer"])
    token = await _token(anon, "viewer")
    refused = await anon.post("/api/v1/tasks/claim", headers=_bearer(token))
    assert refused.status_code == 403
    assert "task_update_status" in refused.json()["detail"]
    listed = await admin.get("/api/v1/tasks", params={"scope": "all", "status": "queued"})
    assert listed.json()["total_tasks"] == 1


async def test_claim_body_errors_are_problem_details(make_user: UserFactory) -> None:
    reader = await make_user("jdoe")
    unknown = await reader.post("/api/v1/tasks/claim", json={"colour": "blue"})
    assert unknown.status_code == 422
    assert unknown.headers["content-type"] == "application/problem+json"
    assert unknown.json()["errors"][0]["loc"] == ["body", "colour"]
    wrong_type = await reader.post("/api/v1/tasks/claim", json={"tags": "qa"})
    assert wrong_type.status_code == 422
    broken = await reader.post(
        "/api/v1/tasks/claim", content=b"{", headers={"content-type": "application/json"}
    )
    assert broken.status_code in (400, 422)
    assert broken.headers["content-type"] == "application/problem+json"
    assert (await reader.post("/api/v1/tasks/claim", json=None)).status_code == 204
