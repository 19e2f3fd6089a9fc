from __future__ import annotations

import asyncio
import json

import httpx
from fastapi import FastAPI

from tests.api.helpers import events, make_group, make_task, make_template
from tests.conftest import UserFactory


def _item(i: int, **extra: object) -> dict[str, object]:
    return {
        "project": "pinealis",
        "template": "glandula_pinealis",
        "content": {"n": i},
        "tracking_id": f"L{i}",
        **extra,
    }


async def test_claim_takes_highest_priority_then_oldest(
    admin: httpx.AsyncClient, make_user: UserFactory, clean_app: FastAPI
) -> None:
    reader = await make_user("jdoe")
    await make_template(admin)
    low = await make_task(admin, users=["jdoe"], priority=0)
    high = await make_task(admin, users=["jdoe"], priority=5)
    low2 = await make_task(admin, users=["jdoe"], priority=0)
    order = []
    for _ in range(3):
        r = await reader.post("/api/v1/tasks/claim")
        assert r.status_code == 200
        body = r.json()
        assert body["status"] == "locked"
        assert body["lock_holder"] == "/api/v1/users/2"
        assert body["lock_version"] == 1
        order.append(body["id"])
    assert order == [high["id"], low["id"], low2["id"]]
    # The claim's event carries the task as it is now, with its holder and template.
    locked = [e for e in await events(clean_app, high["id"]) if e.type == "task.locked"]
    assert len(locked) == 1
    envelope = json.loads(locked[0].payload)
    assert envelope["sequence"] == 2
    assert envelope["task"]["status"] == "locked"
    assert envelope["task"]["lock_holder"] == "jdoe"
    assert envelope["task"]["template"] == "glandula_pinealis"
    assert envelope["task"]["previous_status"] == "queued"
    r = await reader.post("/api/v1/tasks/claim", json={})
    assert r.status_code == 204
    assert r.content == b""


async def test_claim_filters_and_other_readers_tasks(
    admin: httpx.AsyncClient, make_user: UserFactory, clean_app: FastAPI
) -> None:
    jdoe = await make_user("jdoe")
    await make_user("asmith")
    await make_template(admin)
    await make_template(admin, "other")
    await make_group(admin, "neuro", ["jdoe"])
    theirs = await make_task(admin, users=["asmith"])
    tagged = await make_task(admin, groups=["neuro"], tags=["qa"], application_name="ViewR")
    other = await make_task(admin, users=["jdoe"], template="other", project="p2")
    r = await jdoe.post("/api/v1/tasks/claim", json={"template": "other"})
    assert r.status_code == 200, r.text
    assert r.json()["id"] == other["id"]
    r = await jdoe.post("/api/v1/tasks/claim", json={"tags": ["nope"]})
    assert r.status_code == 204
    r = await jdoe.post(
        "/api/v1/tasks/claim", json={"tags": ["qa"], "group": "neuro", "application_name": "ViewR"}
    )
    assert r.json()["id"] == tagged["id"]
    assert (await jdoe.post("/api/v1/tasks/claim")).status_code == 204
    assert (await admin.get(theirs["uri"])).json()["status"] == "queued"
    assert [e.type for e in await events(clean_app, tagged["id"])] == [
        "task.created",
        "task.locked",
    ]
    r = await jdoe.post("/api/v1/tasks/claim", json={"template": "missing"})
    assert r.status_code == 404


async def test_bulk_creates_all_and_skips_known_tracking_ids(
    admin: httpx.AsyncClient, make_user: UserFactory, clean_app: FastAPI
) -> None:
    await make_user("jdoe")
    await make_template(admin)
    await make_group(admin, "neuro", ["jdoe"])
    items = [_item(i, groups=["neuro"], tags=["cohort-2026"]) for i in range(50)]
    r = await admin.post("/api/v1/tasks/bulk", json={"tasks": items})
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["created"] == 50
    assert body["skipped"] == 0
    assert len(body["tasks"]) == 50
    first = (await admin.get(body["tasks"][0])).json()
    assert first["groups"] == ["/api/v1/groups/1"]
    assert first["tracking_id"] == "L0"
    assert len(first["tags"]) == 1

    again = await admin.post(
        "/api/v1/tasks/bulk", json={"tasks": [*items[:10], _item(99, users=["jdoe"])]}
    )
    assert again.status_code == 201
    body = again.json()
    assert body["created"] == 1
    assert body["skipped"] == 10
    assert body["skipped_tasks"][0]["task"] == first["uri"]
    listed = await admin.get("/api/v1/tasks", params={"scope": "all"})
    assert listed.json()["total_tasks"] == 51
    created = [e for e in await events(clean_app) if e.type == "task.created"]
    assert len(created) == 51


async def test_bulk_is_all_or_nothing(admin: httpx.AsyncClient, make_user: UserFactory) -> None:
    await make_user("jdoe")
    await make_template(admin)
    items = [_item(i, users=["jdoe"]) for i in range(5)] + [_item(5, users=["ghost"])]
    r = await admin.post("/api/v1/tasks/bulk", json={"tasks": items})
    assert r.status_code == 404
    assert "ghost" in r.json()["detail"]
    listed = await admin.get("/api/v1/tasks", params={"scope": "all"})
    assert listed.json()["total_tasks"] == 0
    r = await admin.post("/api/v1/tasks/bulk", json={"tasks": []})
    assert r.status_code == 422


async def test_bulk_sent_twice_at_once_creates_no_duplicates(
    admin: httpx.AsyncClient, make_user: UserFactory
) -> None:
    await make_user("jdoe")
    await make_template(admin)
    items = [_item(i, users=["jdoe"]) for i in range(200)]
    results = await asyncio.gather(
        *(admin.post("/api/v1/tasks/bulk", json={"tasks": items}) for _ in range(3))
    )
    assert [r.status_code for r in results] == [201, 201, 201], [r.text for r in results]
    assert sum(r.json()["created"] for r in results) == 200
    listed = await admin.get("/api/v1/tasks", params={"scope": "all", "limit": 1})
    assert listed.json()["total_tasks"] == 200


async def test_bulk_distributes_by_weight(admin: httpx.AsyncClient, make_user: UserFactory) -> None:
    await make_template(admin)
    for name, weight in (("w1", 1), ("w2", 2), ("w3", 3)):
        await make_user(name, weight=weight)
    await make_group(admin, "trio", ["w1", "w2", "w3"])
    items = [_item(i, distribute_in_group="trio") for i in range(60)]
    r = await admin.post("/api/v1/tasks/bulk", json={"tasks": items})
    assert r.status_code == 201
    counts = [
        (await admin.get("/api/v1/tasks", params={"user": u, "limit": 1})).json()["total_tasks"]
        for u in ("w1", "w2", "w3")
    ]
    assert counts == [10, 20, 30]


async def test_post_never_deduplicates_but_bulk_skips_both(
    admin: httpx.AsyncClient, make_user: UserFactory
) -> None:
    await make_user("jdoe")
    await make_template(admin)
    first = await make_task(admin, users=["jdoe"], tracking_id="L100")
    second = await make_task(admin, users=["jdoe"], tracking_id="L100")
    assert first["id"] != second["id"]
    r = await admin.post("/api/v1/tasks/bulk", json={"tasks": [_item(100, users=["jdoe"])]})
    body = r.json()
    assert body["created"] == 0
    assert body["skipped_tasks"][0]["task"] in {first["uri"], second["uri"]}
