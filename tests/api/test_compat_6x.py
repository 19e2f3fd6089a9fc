"""Replays how a TaskManager 6.x client (ViewR, task-client) talks to the service."""

from __future__ import annotations

import httpx

from tests.api.helpers import make_group, make_template
from tests.conftest import UserFactory


async def discover(client: httpx.AsyncClient) -> str:
    versions = (await client.get("/-/versions")).json()["api_versions"]
    newest = max(float(k) for k in versions)
    return str(versions[str(newest)])


async def test_viewr_session(admin: httpx.AsyncClient, make_user: UserFactory) -> None:
    await make_template(admin)
    reader = await make_user("jdoe")
    rival = await make_user("asmith")
    await make_group(admin, "neuro", ["jdoe", "asmith"])
    for i in range(3):
        r = await admin.post(
            "/api/v1/tasks",
            json={
                "project": "pinealis",
                "template": "glandula_pinealis",
                "content": {"n": i},
                "groups": ["neuro"],
                "tags": ["cohort-2026"],
                "application_name": "ViewR",
                "callback_url": "http://xnat/cb",
                "callback_content": '{"ok": true}',
            },
        )
        assert r.status_code == 201

    base = await discover(reader)
    assert base == "/api/v1"
    listed = await reader.get(
        f"{base}/tasks",
        params={
            "project": "pinealis",
            "template": "glandula_pinealis",
            "status": "queued",
            "tag": "cohort-2026",
            "application_name": "ViewR",
            "user": "jdoe",
        },
    )
    assert listed.status_code == 200
    body = listed.json()
    assert body["total_tasks"] == 3
    summary = body["tasks"][0]
    task_id = int(summary["uri"].rsplit("/", 1)[-1])
    assert task_id == summary["id"]

    task = (await reader.get(summary["uri"])).json()
    template = await reader.get(task["template"])
    assert template.status_code == 200
    assert "glandula_pinealis" in template.json()["content"]

    assert (await reader.put(task["lock"])).status_code == 200
    taken = await rival.put(task["lock"])
    assert taken.status_code == 409
    assert taken.json()["error"] == "Task already locked!"

    lock = (await reader.get(task["lock"])).json()
    assert lock["username"] == "jdoe"
    user = (await reader.get(lock["lock"])).json()
    assert user["username"] == "jdoe"

    # Put it back, take it again, then finish it.
    assert (await reader.delete(task["lock"])).json()["lock"] is None
    assert (await reader.put(task["lock"])).status_code == 200
    done = await reader.put(summary["uri"], json={"status": "done"})
    assert done.status_code == 200
    assert done.json()["status"] == "done"
    assert done.json()["lock_holder"] is None
    remaining = await reader.get(f"{base}/tasks", params={"status": "queued"})
    assert remaining.json()["total_tasks"] == 2


async def test_basic_auth_by_email_and_401_realm(
    anon: httpx.AsyncClient, make_user: UserFactory
) -> None:
    await make_user("jdoe", email="jane@example.org")
    r = await anon.get("/api/v1/tasks")
    assert r.status_code == 401
    assert r.headers["www-authenticate"] == 'Basic realm="TaskManager"'
    r = await anon.get("/api/v1/tasks", auth=("jane@example.org", "reader-password"))
    assert r.status_code == 200
