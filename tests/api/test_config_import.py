from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import yaml
from fastapi import FastAPI

from tests.conftest import UserFactory, client_for

EXAMPLE = Path(__file__).resolve().parents[1] / "fixtures" / "example-config.yaml"
URL = "/api/v1/service/config/import-config"


def _example() -> str:
    return EXAMPLE.read_text()


def _body(config: str | dict[str, Any]) -> dict[str, str]:
    text = config if isinstance(config, str) else yaml.safe_dump(config)
    return {"config_definition": text}


def _empty(**extra: list[str]) -> dict[str, list[str]]:
    return {"roles": [], "users": [], "groups": [], "tags": [], **extra}


async def test_example_config_imports(admin: httpx.AsyncClient, clean_app: FastAPI) -> None:
    r = await admin.post(URL, json=_body(_example()))
    assert r.status_code == 200, r.text
    assert r.json() == {
        "created": {
            "roles": ["qa_coordinator"],
            "users": ["jdoe", "asmith", "bkim", "coordinator"],
            "groups": ["neuroradiology", "quality_assurance"],
            "tags": ["pinealis", "cohort-2026", "manual_qa"],
        },
        "updated": _empty(),
        "skipped": _empty(templates=["templates/glandula_pinealis.yaml"]),
    }

    role = (await admin.get("/api/v1/roles/qa_coordinator")).json()
    assert role["permissions"] == [
        "task_read_all",
        "task_update_status_all",
        "task_update_user",
        "task_update_lock_all",
    ]
    coordinator = (await admin.get("/api/v1/users/coordinator")).json()
    assert coordinator["roles"] == ["qa_coordinator", "superuser"]
    assert coordinator["assignment_weight"] == 0
    assert coordinator["email"] == "coordinator@example.org"
    group = (await admin.get("/api/v1/groups/neuroradiology")).json()
    assert [(m["username"], m["assignment_weight"]) for m in group["members"]] == [
        ("jdoe", 1.0),
        ("asmith", 0.5),
        ("bkim", 0.1),
    ]
    tags = (await admin.get("/api/v1/tags")).json()["tags"]
    assert sorted(t["name"] for t in tags) == ["cohort-2026", "manual_qa", "pinealis"]

    async with client_for(clean_app, ("coordinator", "change-me-4")) as client:
        assert (await client.get("/api/v1/users/bkim")).status_code == 200
    async with client_for(clean_app, ("jdoe", "change-me-1")) as client:
        assert (await client.get("/api/v1/groups")).json() == {
            "groups": [
                group["uri"],
                (await admin.get("/api/v1/groups/quality_assurance")).json()["uri"],
            ]
        }


async def test_second_post_skips_everything_and_put_updates(
    admin: httpx.AsyncClient, clean_app: FastAPI
) -> None:
    assert (await admin.post(URL, json=_body(_example()))).status_code == 200

    again = await admin.post(URL, json=_body(_example()))
    assert again.status_code == 200
    report = again.json()
    assert report["created"] == _empty()
    assert report["updated"] == _empty()
    assert report["skipped"] == {
        "roles": ["qa_coordinator"],
        "users": ["jdoe", "asmith", "bkim", "coordinator"],
        "groups": ["neuroradiology", "quality_assurance"],
        "tags": ["pinealis", "cohort-2026", "manual_qa"],
        "templates": ["templates/glandula_pinealis.yaml"],
    }

    config = yaml.safe_load(_example())
    config["users"][0]["assignment_weight"] = 2.0
    config["users"][1]["password"] = "a-new-password"
    config["users"][2]["roles"] = ["superuser"]
    config["groups"][0]["members"] = ["bkim"]
    config["roles"][0]["permissions"] = ["task_read_all"]
    put = await admin.put(URL, json=_body(config))
    assert put.status_code == 200, put.text
    assert put.json()["updated"] == {
        "roles": ["qa_coordinator"],
        "users": ["jdoe", "asmith", "bkim", "coordinator"],
        "groups": ["neuroradiology", "quality_assurance"],
        "tags": [],
    }
    assert put.json()["created"] == _empty()

    assert (await admin.get("/api/v1/users/jdoe")).json()["assignment_weight"] == 2.0
    assert (await admin.get("/api/v1/users/bkim")).json()["roles"] == ["superuser"]
    members = (await admin.get("/api/v1/groups/neuroradiology")).json()["members"]
    assert [m["username"] for m in members] == ["bkim"]
    role = (await admin.get("/api/v1/roles/qa_coordinator")).json()
    assert role["permissions"] == ["task_read_all"]
    async with client_for(clean_app, ("asmith", "change-me-2")) as old:
        assert (await old.get("/api/v1/users/me")).status_code == 401
    async with client_for(clean_app, ("asmith", "a-new-password")) as new:
        assert (await new.get("/api/v1/users/me")).status_code == 200
    # An unchanged password stays valid after the overwrite.
    async with client_for(clean_app, ("jdoe", "change-me-1")) as same:
        assert (await same.get("/api/v1/users/me")).status_code == 200


async def test_invalid_yaml_is_422_saying_where(admin: httpx.AsyncClient) -> None:
    r = await admin.post(URL, json=_body("users:\n  - username: [jdoe\n"))
    assert r.status_code == 422
    assert r.headers["content-type"] == "application/problem+json"
    assert "line" in r.json()["detail"]

    not_a_mapping = await admin.post(URL, json=_body("- jdoe\n- asmith\n"))
    assert not_a_mapping.status_code == 422
    assert "mapping" in not_a_mapping.json()["detail"]


async def test_wrong_shapes_are_422_saying_where(admin: httpx.AsyncClient) -> None:
    missing = await admin.post(
        URL,
        json=_body({"users": [{"username": "ok", "password": "x"}, {"name": "no username"}]}),
    )
    assert missing.status_code == 422
    assert "users[1].username" in missing.json()["detail"]

    typo = await admin.post(URL, json=_body({"usres": []}))
    assert typo.status_code == 422
    assert "usres" in typo.json()["detail"]

    permission = await admin.post(
        URL, json=_body({"roles": [{"name": "r", "permissions": ["fly"]}]})
    )
    assert permission.status_code == 422
    assert "roles[0].permissions" in permission.json()["detail"]
    assert "fly" in permission.json()["detail"]

    no_password = await admin.post(URL, json=_body({"users": [{"username": "newbie"}]}))
    assert no_password.status_code == 422
    assert "newbie" in no_password.json()["detail"]

    twice = await admin.post(URL, json=_body({"tags": ["a", "a"]}))
    assert twice.status_code == 422
    assert "'a'" in twice.json()["detail"]


async def test_unknown_references_are_404_and_nothing_is_kept(
    admin: httpx.AsyncClient,
) -> None:
    config = yaml.safe_load(_example())
    config["users"][3]["roles"] = ["superuser", "wizard"]
    r = await admin.post(URL, json=_body(config))
    assert r.status_code == 404
    assert "wizard" in r.json()["detail"]
    assert "coordinator" in r.json()["detail"]
    # All or nothing: neither the role nor the users before the error were kept.
    assert (await admin.get("/api/v1/roles/qa_coordinator")).status_code == 404
    assert (await admin.get("/api/v1/users/jdoe")).status_code == 404

    config = yaml.safe_load(_example())
    config["groups"][1]["members"] = ["jdoe", "ghost"]
    r = await admin.post(URL, json=_body(config))
    assert r.status_code == 404
    assert "ghost" in r.json()["detail"]
    assert "quality_assurance" in r.json()["detail"]
    assert (await admin.get("/api/v1/groups/neuroradiology")).status_code == 404


async def test_import_needs_admin_permissions(make_user: UserFactory) -> None:
    coordinator = await make_user("coord", roles=("superuser",))
    r = await coordinator.post(URL, json=_body(_example()))
    assert r.status_code == 403
    detail = r.json()["detail"]
    assert "roles_manage" in detail
    assert "user_add" in detail
    assert "group_add" in detail
