from __future__ import annotations

import httpx
import yaml

from tests.conftest import UserFactory

PINEALIS = "tests/fixtures/templates/glandula_pinealis.yaml"


async def test_template_lifecycle_by_id_and_label(admin: httpx.AsyncClient) -> None:
    text = "template_name: glandula_pinealis\ncontexts: []\n"
    created = await admin.post("/api/v1/task_templates", json={"label": "pin", "content": text})
    assert created.status_code == 201
    body = created.json()
    assert body["uri"] == f"/api/v1/task_templates/{body['id']}"
    assert body["content"] == text

    listed = await admin.get("/api/v1/task_templates")
    assert listed.json() == {"task_templates": [body["uri"]]}
    assert (await admin.get("/api/v1/task_templates/pin")).json() == body
    assert (await admin.get(body["uri"])).json() == body

    updated = await admin.put("/api/v1/task_templates/pin", json={"content": {"a": 1}})
    assert updated.status_code == 200
    assert yaml.safe_load(updated.json()["content"]) == {"a": 1}

    assert (await admin.delete("/api/v1/task_templates/pin")).status_code == 204
    missing = await admin.get("/api/v1/task_templates/pin")
    assert missing.status_code == 404
    assert "pin" in missing.json()["detail"]


async def test_duplicate_label_is_409(admin: httpx.AsyncClient) -> None:
    assert (
        await admin.post("/api/v1/task_templates", json={"label": "x", "content": "a: 1"})
    ).status_code == 201
    dup = await admin.post("/api/v1/task_templates", json={"label": "x", "content": "a: 2"})
    assert dup.status_code == 409
    assert dup.headers["content-type"] == "application/problem+json"
    assert "already exists" in dup.json()["detail"]


async def test_reader_cannot_create_template(make_user: UserFactory) -> None:
    reader = await make_user("jdoe")
    response = await reader.post("/api/v1/task_templates", json={"label": "x", "content": "a"})
    assert response.status_code == 403
    assert "template_add" in response.json()["detail"]


async def test_malformed_json_is_422_problem(admin: httpx.AsyncClient) -> None:
    response = await admin.post(
        "/api/v1/task_templates",
        content=b'{"label": "x", ',
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["errors"]
