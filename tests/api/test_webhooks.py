"""Webhook subscriptions: CRUD, the secret shown once, validation, permissions."""

from __future__ import annotations

import base64
import json
from datetime import datetime
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from shared.delivery.signing import is_valid_secret
from shared.models import Webhook
from tests.conftest import UserFactory

HOOK = {"url": "https://hooks.example.org/taskmanager", "events": ["task.status.*"]}
GOOD_SECRET = "whsec_" + base64.b64encode(b"0123456789abcdef0123").decode()


async def create(admin: httpx.AsyncClient, **fields: Any) -> dict[str, Any]:
    r = await admin.post("/api/v1/webhooks", json={**HOOK, **fields})
    assert r.status_code == 201, r.text
    body: dict[str, Any] = r.json()
    return body


async def stored(app: FastAPI, webhook_id: int) -> Webhook:
    async with app.state.sessions() as session:
        found: Webhook | None = await session.get(Webhook, webhook_id)
        assert found is not None
        return found


async def test_create_shows_the_generated_secret_once(
    admin: httpx.AsyncClient, clean_app: FastAPI
) -> None:
    created = await create(admin, events=["task.status.done", "taskgroup.#"])
    assert created["uri"] == f"/api/v1/webhooks/{created['id']}"
    assert created["url"] == HOOK["url"]
    assert created["events"] == ["task.status.done", "taskgroup.#"]
    assert created["enabled"] is True
    assert created["description"] is None
    assert created["secret"].startswith("whsec_")
    assert is_valid_secret(created["secret"])

    row = await stored(clean_app, created["id"])
    assert row.secret == created["secret"]
    assert json.loads(row.events) == ["task.status.done", "taskgroup.#"]

    got = (await admin.get(created["uri"])).json()
    assert "secret" not in got
    assert got == {k: v for k, v in created.items() if k != "secret"}
    listed = (await admin.get("/api/v1/webhooks")).json()
    assert listed["webhooks"] == [got]
    assert listed["total_webhooks"] == 1


async def test_create_keeps_a_given_secret_and_fields(
    admin: httpx.AsyncClient, clean_app: FastAPI
) -> None:
    created = await create(
        admin, secret=GOOD_SECRET, enabled=False, description="Syncotron", events=["#"]
    )
    assert created["secret"] == GOOD_SECRET
    assert created["enabled"] is False
    assert created["description"] == "Syncotron"
    assert created["events"] == ["#"]
    assert (await stored(clean_app, created["id"])).secret == GOOD_SECRET
    # Two subscriptions never share a generated secret.
    assert (await create(admin))["secret"] != (await create(admin))["secret"]


@pytest.mark.parametrize(
    ("fields", "location", "message"),
    [
        ({"url": "/relative/hook"}, "url", "absolute http:// or https:// URL"),
        ({"url": "ftp://files.example.org/hook"}, "url", "absolute http:// or https:// URL"),
        ({"url": "http://"}, "url", "absolute http:// or https:// URL"),
        ({"url": "https://example.org/a hook"}, "url", "without spaces"),
        ({"url": "http://example.org:99999/"}, "url", "not a valid URL"),
        ({"events": []}, "events", "at least 1 item"),
        ({"events": ["task..done"]}, "events.0", "'task..done' is not a topic pattern"),
        ({"events": ["task.status.d*"]}, "events.0", "is not a topic pattern"),
        ({"events": ["task.created", "task created"]}, "events.1", "is not a topic pattern"),
        ({"events": [""]}, "events.0", "at least 1 character"),
        ({"secret": "0123456789abcdef0123"}, "secret", "must start with 'whsec_'"),
        ({"secret": "whsec_not*base64!"}, "secret", "not valid base64"),
        ({"secret": "whsec_" + base64.b64encode(b"short").decode()}, "secret", "too short"),
    ],
)
async def test_create_rejects_bad_input_with_a_message(
    admin: httpx.AsyncClient, fields: dict[str, Any], location: str, message: str
) -> None:
    r = await admin.post("/api/v1/webhooks", json={**HOOK, **fields})
    assert r.status_code == 422, r.text
    assert r.headers["content-type"] == "application/problem+json"
    problem = r.json()
    assert message in problem["detail"]
    assert [".".join(e["loc"]) for e in problem["errors"]] == [f"body.{location}"]
    assert (await admin.get("/api/v1/webhooks")).json()["webhooks"] == []


async def test_pattern_help_names_the_syntax(admin: httpx.AsyncClient) -> None:
    r = await admin.post("/api/v1/webhooks", json={**HOOK, "events": ["task/*"]})
    assert r.status_code == 422
    assert "'*' (one word) and '#' (any number of words)" in r.json()["detail"]


async def test_update_is_partial_and_bumps_update_time(
    admin: httpx.AsyncClient, clean_app: FastAPI
) -> None:
    created = await create(admin, description="first")
    uri = created["uri"]

    r = await admin.put(uri, json={"enabled": False})
    assert r.status_code == 200, r.text
    disabled = r.json()
    assert disabled["enabled"] is False
    assert disabled["url"] == created["url"]
    assert disabled["events"] == created["events"]
    assert disabled["description"] == "first"
    assert disabled["create_time"] == created["create_time"]
    assert datetime.fromisoformat(disabled["update_time"]) > datetime.fromisoformat(
        created["update_time"]
    )
    assert "secret" not in disabled

    r = await admin.put(
        uri,
        json={
            "url": "http://syncotron.local:8080/events",
            "events": ["task.*", "task.#"],
            "description": None,
            "secret": GOOD_SECRET,
        },
    )
    assert r.status_code == 200, r.text
    changed = r.json()
    assert changed["url"] == "http://syncotron.local:8080/events"
    assert changed["events"] == ["task.*", "task.#"]
    assert changed["description"] is None
    assert changed["enabled"] is False
    assert "secret" not in changed
    assert datetime.fromisoformat(changed["update_time"]) > datetime.fromisoformat(
        disabled["update_time"]
    )
    assert (await admin.get(uri)).json() == changed
    row = await stored(clean_app, created["id"])
    assert row.secret == GOOD_SECRET
    assert json.loads(row.events) == ["task.*", "task.#"]
    assert row.update_time == datetime.fromisoformat(changed["update_time"])


async def test_every_update_moves_update_time_forward(admin: httpx.AsyncClient) -> None:
    uri = (await create(admin))["uri"]
    times = []
    for enabled in (False, True, True, False):
        r = await admin.put(uri, json={"enabled": enabled})
        assert r.status_code == 200, r.text
        times.append(datetime.fromisoformat(r.json()["update_time"]))
    assert times == sorted(set(times))


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"url": None}, "body.url: Value error, must not be null"),
        ({"events": None}, "body.events: Value error, must not be null"),
        ({"enabled": None}, "body.enabled: Value error, must not be null"),
        ({"secret": "whsec_"}, "body.secret: Value error, is too short"),
        ({"events": ["task.#", "a..b"]}, "'a..b' is not a topic pattern"),
        ({"url": "mailto:ops@example.org"}, "absolute http:// or https:// URL"),
        ({"color": "red"}, "body.color: Extra inputs are not permitted"),
    ],
)
async def test_update_rejects_bad_input_and_changes_nothing(
    admin: httpx.AsyncClient, fields: dict[str, Any], message: str
) -> None:
    created = await create(admin)
    r = await admin.put(created["uri"], json=fields)
    assert r.status_code == 422, r.text
    assert message in r.json()["detail"]
    assert (await admin.get(created["uri"])).json() == {
        k: v for k, v in created.items() if k != "secret"
    }


async def test_delete_removes_the_subscription(admin: httpx.AsyncClient) -> None:
    keep = await create(admin, description="keep")
    gone = await create(admin, description="gone")
    assert (await admin.delete(gone["uri"])).status_code == 204
    for method in ("GET", "PUT", "DELETE"):
        r = await admin.request(method, gone["uri"], json={} if method == "PUT" else None)
        assert r.status_code == 404, (method, r.text)
        assert r.json()["detail"] == f"Webhook {gone['id']} not found"
    listed = (await admin.get("/api/v1/webhooks")).json()
    assert [w["id"] for w in listed["webhooks"]] == [keep["id"]]
    assert listed["total_webhooks"] == 1


@pytest.mark.parametrize("webhook_id", ["0", "-1", "999999", str(2**31), str(2**63)])
async def test_unknown_webhook_is_404(admin: httpx.AsyncClient, webhook_id: str) -> None:
    r = await admin.get(f"/api/v1/webhooks/{webhook_id}")
    assert r.status_code == 404, r.text
    assert r.json()["detail"] == f"Webhook {webhook_id} not found"


async def test_list_paginates_oldest_first(admin: httpx.AsyncClient) -> None:
    ids = [(await create(admin, description=f"hook {n}"))["id"] for n in range(5)]
    page = (await admin.get("/api/v1/webhooks", params={"offset": 1, "limit": 2})).json()
    assert [w["id"] for w in page["webhooks"]] == ids[1:3]
    assert (page["total_webhooks"], page["offset"], page["limit"]) == (5, 1, 2)
    everything = (await admin.get("/api/v1/webhooks")).json()
    assert [w["id"] for w in everything["webhooks"]] == ids
    assert everything["limit"] == 10_000
    assert (await admin.get("/api/v1/webhooks", params={"limit": 0})).status_code == 422


async def test_readers_and_strangers_cannot_manage_webhooks(
    admin: httpx.AsyncClient, anon: httpx.AsyncClient, make_user: UserFactory
) -> None:
    uri = (await create(admin))["uri"]
    reader = await make_user("jdoe")
    calls = [
        ("GET", "/api/v1/webhooks", None),
        ("POST", "/api/v1/webhooks", HOOK),
        ("GET", uri, None),
        ("PUT", uri, {"enabled": False}),
        ("DELETE", uri, None),
    ]
    for method, path, body in calls:
        r = await reader.request(method, path, json=body)
        assert r.status_code == 403, (method, path, r.text)
        assert r.json()["detail"] == "Permission required: webhook_manage"
        assert (await anon.request(method, path, json=body)).status_code == 401
    assert (await admin.get(uri)).json()["enabled"] is True
