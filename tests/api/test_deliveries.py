"""Deliveries: the list and its filters, one delivery with its attempts, an admin's retry."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from uuid import uuid4

import httpx
import pytest
from fastapi import FastAPI

from shared.models import Delivery, DeliveryAttempt, utcnow
from tests.conftest import UserFactory

CALLBACK_URL = "http://xnat.example.org/callback"
HOOK_URL = "https://hooks.example.org/taskmanager"
LISTED = {
    "uri",
    "id",
    "event_id",
    "event_type",
    "target",
    "webhook_id",
    "task_id",
    "taskgroup_id",
    "method",
    "url",
    "status",
    "attempts",
    "next_attempt_at",
    "deadline_at",
    "last_status_code",
    "last_error",
    "occurred_at",
    "created_at",
    "delivered_at",
}


def when(text: str | None) -> datetime:
    assert text is not None
    return datetime.fromisoformat(text)


async def add_delivery(app: FastAPI, **fields: Any) -> int:
    now = utcnow()
    values: dict[str, Any] = {
        "event_id": str(uuid4()),
        "event_type": "task.status.done",
        "target": "callback",
        "task_id": 1,
        "method": "PUT",
        "url": CALLBACK_URL,
        "content_type": "application/json",
        "body": '{"status": "done"}',
        "next_attempt_at": now,
        "deadline_at": now + timedelta(days=2),
        "occurred_at": now,
    }
    values.update(fields)
    async with app.state.sessions() as session:
        delivery = Delivery(**values)
        session.add(delivery)
        await session.commit()
        assert delivery.id is not None
        return delivery.id


async def add_attempt(app: FastAPI, delivery_id: int, **fields: Any) -> None:
    async with app.state.sessions() as session:
        session.add(DeliveryAttempt(delivery_id=delivery_id, **fields))
        await session.commit()


async def stored(app: FastAPI, delivery_id: int) -> Delivery:
    async with app.state.sessions() as session:
        found: Delivery | None = await session.get(Delivery, delivery_id)
        assert found is not None
        return found


def failed(**fields: Any) -> dict[str, Any]:
    """A delivery that gave up: claimed once, past its deadline, with its last answer."""
    long_ago = utcnow() - timedelta(days=3)
    return {
        "status": "failed",
        "attempts": 7,
        "next_attempt_at": None,
        "deadline_at": long_ago + timedelta(days=2),
        "claimed_by": "worker-1",
        "claimed_until": long_ago,
        "last_status_code": 503,
        "last_error": "gave up after 7 attempts (HTTP 503)",
        "occurred_at": long_ago,
        "created_at": long_ago,
        "updated_at": long_ago,
        **fields,
    }


async def test_list_is_newest_first_without_bodies(
    admin: httpx.AsyncClient, clean_app: FastAPI
) -> None:
    first = await add_delivery(clean_app)
    second = await add_delivery(
        clean_app,
        event_type="task.created",
        target="webhook:4",
        webhook_id=4,
        task_id=2,
        method="POST",
        url=HOOK_URL,
    )
    r = await admin.get("/api/v1/deliveries")
    assert r.status_code == 200, r.text
    listed = r.json()
    assert listed["total_deliveries"] == 2
    assert (listed["offset"], listed["limit"]) == (0, 10_000)
    assert [d["id"] for d in listed["deliveries"]] == [second, first]
    newest = listed["deliveries"][0]
    assert set(newest) == LISTED
    assert newest["uri"] == f"/api/v1/deliveries/{second}"
    assert (newest["target"], newest["webhook_id"], newest["method"]) == ("webhook:4", 4, "POST")
    assert (newest["status"], newest["attempts"], newest["delivered_at"]) == ("pending", 0, None)
    row = await stored(clean_app, second)
    assert newest["event_id"] == row.event_id
    assert when(newest["deadline_at"]) == row.deadline_at


async def test_list_paginates(admin: httpx.AsyncClient, clean_app: FastAPI) -> None:
    ids = [await add_delivery(clean_app) for _ in range(5)]
    page = (await admin.get("/api/v1/deliveries", params={"offset": 1, "limit": 2})).json()
    assert [d["id"] for d in page["deliveries"]] == [ids[3], ids[2]]
    assert (page["total_deliveries"], page["offset"], page["limit"]) == (5, 1, 2)
    past = (await admin.get("/api/v1/deliveries", params={"offset": 5})).json()
    assert (past["deliveries"], past["total_deliveries"]) == ([], 5)
    r = await admin.get("/api/v1/deliveries", params={"offset": -1})
    assert r.status_code == 422
    assert "query.offset" in r.json()["detail"]


async def test_list_filters_combine(admin: httpx.AsyncClient, clean_app: FastAPI) -> None:
    done_7 = await add_delivery(clean_app, task_id=7, status="delivered", delivered_at=utcnow())
    hook_7 = await add_delivery(
        clean_app, task_id=7, event_type="task.locked", target="webhook:1", url=HOOK_URL
    )
    failed_8 = await add_delivery(clean_app, **failed(task_id=8))
    group = await add_delivery(
        clean_app, task_id=None, taskgroup_id=3, event_type="taskgroup.done", **failed()
    )

    async def ids(**params: Any) -> list[int]:
        r = await admin.get("/api/v1/deliveries", params=params)
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["total_deliveries"] == len(body["deliveries"])
        return [d["id"] for d in body["deliveries"]]

    assert await ids(status="failed") == [group, failed_8]
    assert await ids(status="delivered") == [done_7]
    assert await ids(status="pending") == [hook_7]
    assert await ids(task=7) == [hook_7, done_7]
    assert await ids(task="/api/v1/tasks/8") == [failed_8]
    assert await ids(task=2**40) == []
    assert await ids(url=HOOK_URL) == [hook_7]
    assert await ids(url=HOOK_URL + "/") == []
    assert await ids(event_type="taskgroup.done") == [group]
    assert await ids(task=7, status="delivered") == [done_7]
    assert await ids(task=7, url=CALLBACK_URL, event_type="task.locked") == []


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"status": "queued"}, "query.status: Input should be 'pending', 'delivered' or 'failed'"),
        ({"status": "FAILED"}, "query.status: Input should be 'pending', 'delivered' or 'failed'"),
        ({"task": "pinealis"}, "task must be a task id or uri, got 'pinealis'"),
        ({"limit": 0}, "query.limit: Input should be greater than or equal to 1"),
    ],
)
async def test_list_rejects_bad_filters(
    admin: httpx.AsyncClient, params: dict[str, Any], message: str
) -> None:
    r = await admin.get("/api/v1/deliveries", params=params)
    assert r.status_code == 422, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert message in r.json()["detail"]


async def test_get_shows_every_attempt_oldest_first(
    admin: httpx.AsyncClient, clean_app: FastAPI
) -> None:
    delivery_id = await add_delivery(clean_app, **failed())
    other = await add_delivery(clean_app)
    start = utcnow() - timedelta(hours=1)
    # Recorded out of order: the log is ordered by when each attempt was made.
    await add_attempt(
        clean_app,
        delivery_id,
        attempted_at=start + timedelta(seconds=10),
        duration_ms=30000.0,
        error="ReadTimeout: timed out",
    )
    await add_attempt(
        clean_app,
        delivery_id,
        attempted_at=start,
        duration_ms=12.5,
        status_code=503,
        response="Service Unavailable",
    )
    await add_attempt(clean_app, other, attempted_at=start, duration_ms=3.0, status_code=200)

    r = await admin.get(f"/api/v1/deliveries/{delivery_id}")
    assert r.status_code == 200, r.text
    detail = r.json()
    assert set(detail) == LISTED | {"attempts_log"}
    assert detail["status"] == "failed"
    assert detail["last_error"] == "gave up after 7 attempts (HTTP 503)"
    log = detail["attempts_log"]
    assert [(a["status_code"], a["error"], a["response"]) for a in log] == [
        (503, None, "Service Unavailable"),
        (None, "ReadTimeout: timed out", None),
    ]
    assert [a["duration_ms"] for a in log] == [12.5, 30000.0]
    assert when(log[0]["attempted_at"]) == start
    listed = (await admin.get("/api/v1/deliveries", params={"status": "failed"})).json()
    assert listed["deliveries"] == [{k: v for k, v in detail.items() if k != "attempts_log"}]
    assert (await admin.get(f"/api/v1/deliveries/{other}")).json()["attempts_log"][0][
        "status_code"
    ] == 200


async def test_retry_puts_a_failed_delivery_back_in_the_queue(
    admin: httpx.AsyncClient, clean_app: FastAPI
) -> None:
    delivery_id = await add_delivery(clean_app, **failed())
    before = utcnow()
    r = await admin.post(f"/api/v1/deliveries/{delivery_id}/retry")
    after = utcnow()
    assert r.status_code == 200, r.text
    retried = r.json()
    assert retried["uri"] == f"/api/v1/deliveries/{delivery_id}"
    assert retried["status"] == "pending"
    assert before <= when(retried["next_attempt_at"]) <= after
    assert when(retried["deadline_at"]) == when(retried["next_attempt_at"]) + timedelta(days=2)
    # The history stays: attempts made and the last answer.
    assert (retried["attempts"], retried["last_status_code"]) == (7, 503)

    row = await stored(clean_app, delivery_id)
    assert row.status == "pending"
    assert (row.claimed_by, row.claimed_until) == (None, None)
    assert row.next_attempt_at == when(retried["next_attempt_at"])
    assert before <= row.updated_at <= after
    assert (await admin.get(retried["uri"])).json()["status"] == "pending"

    again = await admin.post(f"/api/v1/deliveries/{delivery_id}/retry")
    assert again.status_code == 409


@pytest.mark.parametrize("status", ["pending", "delivered"])
async def test_retry_refuses_a_delivery_that_has_not_failed(
    admin: httpx.AsyncClient, clean_app: FastAPI, status: str
) -> None:
    delivery_id = await add_delivery(clean_app, status=status, claimed_by="worker-2")
    before = await stored(clean_app, delivery_id)
    r = await admin.post(f"/api/v1/deliveries/{delivery_id}/retry")
    assert r.status_code == 409, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["detail"] == (
        f"Delivery {delivery_id} is {status}: only a failed delivery can be retried"
    )
    after = await stored(clean_app, delivery_id)
    assert after.model_dump() == before.model_dump()


@pytest.mark.parametrize("delivery_id", ["0", "999999", str(2**31), str(2**63)])
async def test_unknown_delivery_is_404(admin: httpx.AsyncClient, delivery_id: str) -> None:
    for method, path in (
        ("GET", f"/api/v1/deliveries/{delivery_id}"),
        ("POST", f"/api/v1/deliveries/{delivery_id}/retry"),
    ):
        r = await admin.request(method, path)
        assert r.status_code == 404, r.text
        assert r.json()["detail"] == f"Delivery {delivery_id} not found"


async def test_readers_and_strangers_cannot_see_deliveries(
    admin: httpx.AsyncClient,
    anon: httpx.AsyncClient,
    make_user: UserFactory,
    clean_app: FastAPI,
) -> None:
    delivery_id = await add_delivery(clean_app, **failed())
    reader = await make_user("jdoe")
    for method, path in (
        ("GET", "/api/v1/deliveries"),
        ("GET", f"/api/v1/deliveries/{delivery_id}"),
        ("POST", f"/api/v1/deliveries/{delivery_id}/retry"),
    ):
        r = await reader.request(method, path)
        assert r.status_code == 403, (method, path, r.text)
        assert r.json()["detail"] == "Permission required: delivery_manage"
        assert (await anon.request(method, path)).status_code == 401
    assert (await stored(clean_app, delivery_id)).status == "failed"
