"""Callbacks and webhooks end to end, with RabbitMQ and in the embedded mode, on every database."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from tests.api.helpers import events, make_template
from tests.integration.conftest import FAST_RETRIES, purge_delivery_queue, worker_for
from tests.receiver import Receiver
from worker.service import Worker


async def _task(admin: httpx.AsyncClient, **fields: Any) -> dict[str, Any]:
    body = {
        "project": "pinealis",
        "template": "glandula_pinealis",
        "content": {"scan": 1},
        "users": ["admin"],
    }
    r = await admin.post("/api/v1/tasks", json=body | fields)
    assert r.status_code == 201, r.text
    return dict(r.json())


async def _done(client: httpx.AsyncClient, task: dict[str, Any]) -> None:
    r = await client.put(task["uri"], json={"status": "done"})
    assert r.status_code == 200, r.text


async def _event_ids(app: FastAPI, task_id: int, event_type: str) -> list[str]:
    return [e.event_id for e in await events(app, task_id) if e.type == event_type]


async def _delivery(admin: httpx.AsyncClient, task_id: int, status: str) -> dict[str, Any]:
    """The task's one delivery, once it reached `status` (the worker records it async)."""
    deadline = time.monotonic() + 30
    while True:
        r = await admin.get("/api/v1/deliveries", params={"task": task_id})
        assert r.status_code == 200, r.text
        found = r.json()["deliveries"]
        if found and found[0]["status"] == status:
            assert len(found) == 1
            detail = await admin.get(found[0]["uri"])
            return dict(detail.json())
        assert time.monotonic() < deadline, f"delivery never became {status}: {found}"
        await asyncio.sleep(0.1)


async def test_done_calls_back_once_per_transition_with_its_content(
    admin: httpx.AsyncClient, clean_app: FastAPI, receiver: Receiver, delivering: Worker
) -> None:
    await make_template(admin)
    as_json = await _task(
        admin,
        callback_url=receiver.url("/ok/json"),
        callback_content='{"experiment": "E1", "field": "landmarks"}',
    )
    as_text = await _task(
        admin, callback_url=receiver.url("/ok/text"), callback_content="plain words"
    )
    await _done(admin, as_json)
    await _done(admin, as_text)
    await _done(admin, as_json)  # the same status again: no transition, no callback
    await receiver.wait_for(lambda: len(receiver.received) >= 2)
    await asyncio.sleep(0.5)
    [json_call] = receiver.to("/ok/json")
    [text_call] = receiver.to("/ok/text")
    assert json_call.method == "PUT"
    assert json_call.headers["content-type"] == "application/json"
    assert json_call.headers["user-agent"].startswith("TaskManager/")
    assert json.loads(json_call.body) == {"experiment": "E1", "field": "landmarks"}
    assert text_call.headers["content-type"].startswith("text/plain")
    assert text_call.body == b"plain words"
    done_events = await _event_ids(clean_app, as_json["id"], "task.status.done")
    assert json_call.headers["webhook-id"] == done_events[0]

    # Reopened and done again: a new transition, a new callback with a new id.
    assert (await admin.put(as_json["uri"], json={"status": "queued"})).status_code == 200
    await _done(admin, as_json)
    await receiver.wait_for(lambda: len(receiver.to("/ok/json")) == 2)
    second = receiver.to("/ok/json")[1]
    done_events = await _event_ids(clean_app, as_json["id"], "task.status.done")
    assert second.headers["webhook-id"] == done_events[1] != done_events[0]


@pytest.mark.parametrize("mode", ["broker", "embedded"])
async def test_a_late_callback_sends_the_body_the_task_had_when_done(
    admin: httpx.AsyncClient,
    receiver: Receiver,
    clean_app: FastAPI,
    mode: str,
    request: pytest.FixtureRequest,
) -> None:
    await make_template(admin)
    edited = await _task(
        admin, callback_url=receiver.url("/ok/json"), callback_content='{"version": 1}'
    )
    deleted = await _task(
        admin, callback_url=receiver.url("/ok/text"), callback_content="the first words"
    )
    await _done(admin, edited)
    await _done(admin, deleted)
    # No worker yet (a backlog): the task's content is edited, the other task deleted.
    r = await admin.put(edited["uri"], json={"callback_content": '{"version": 2}'})
    assert r.status_code == 200, r.text
    r = await admin.delete(deleted["uri"])
    assert r.status_code in (200, 204), r.text

    url = None
    if mode == "broker":
        url = request.getfixturevalue("amqp_url")
        await purge_delivery_queue(url)
    worker = worker_for(clean_app, mode, url)
    await worker.start()
    try:
        await receiver.wait_for(lambda: len(receiver.received) >= 2)
    finally:
        await asyncio.wait_for(worker.stop(), 30)
    [json_call] = receiver.to("/ok/json")
    [text_call] = receiver.to("/ok/text")
    assert json.loads(json_call.body) == {"version": 1}
    assert text_call.body == b"the first words"


async def test_taskgroup_calls_back_once_when_all_its_tasks_are_done(
    admin: httpx.AsyncClient, receiver: Receiver, delivering: Worker
) -> None:
    await make_template(admin)
    r = await admin.post(
        "/api/v1/taskgroups",
        json={
            "label": "cohort-1",
            "callback_url": receiver.url("/ok/group"),
            "callback_content": '{"cohort": 1}',
            "tasks": [
                {"template": "glandula_pinealis", "content": {"n": i}, "users": ["admin"]}
                for i in range(3)
            ],
        },
    )
    assert r.status_code == 201, r.text
    tasks = r.json()["tasks"]
    for task in tasks[:2]:
        await _done(admin, task)
    await asyncio.sleep(0.5)
    assert receiver.to("/ok/group") == []
    await _done(admin, tasks[2])
    await _done(admin, tasks[2])
    await receiver.wait_for(lambda: len(receiver.to("/ok/group")) == 1)
    await asyncio.sleep(0.5)
    [call] = receiver.to("/ok/group")
    assert json.loads(call.body) == {"cohort": 1}


async def test_a_failing_receiver_is_retried_until_it_answers(
    admin: httpx.AsyncClient, receiver: Receiver, delivering: Worker
) -> None:
    await make_template(admin)
    task = await _task(admin, callback_url=receiver.url("/flaky/3/cb"), callback_content="{}")
    await _done(admin, task)
    delivery = await _delivery(admin, task["id"], "delivered")
    assert len(receiver.to("/flaky/3/cb")) == 4
    assert delivery["attempts"] == 4
    assert [a["status_code"] for a in delivery["attempts_log"]] == [503, 503, 503, 200]
    ids = {r.headers["webhook-id"] for r in receiver.received}
    assert len(ids) == 1  # every retry carries the event's id


async def test_a_404_fails_for_good_until_an_admin_retries_it(
    admin: httpx.AsyncClient, receiver: Receiver, delivering: Worker
) -> None:
    await make_template(admin)
    path = "/status/404/cb"
    task = await _task(admin, callback_url=receiver.url(path), callback_content="{}")
    await _done(admin, task)
    failed = await _delivery(admin, task["id"], "failed")
    assert failed["attempts"] == 1
    assert failed["last_status_code"] == 404
    assert "not retried" in failed["last_error"]
    await asyncio.sleep(0.5)
    assert len(receiver.to(path)) == 1

    receiver.fixed.add(path)
    r = await admin.post(f"/api/v1/deliveries/{failed['id']}/retry")
    assert r.status_code == 200, r.text
    delivered = await _delivery(admin, task["id"], "delivered")
    assert delivered["attempts"] == 2
    assert len(receiver.to(path)) == 2


def _verify_standard_webhook(secret: str, headers: dict[str, str], body: bytes) -> bool:
    """The Standard Webhooks check, written from the specification: HMAC-SHA256 over
    "{webhook-id}.{webhook-timestamp}.{body}" keyed with the base64 part of "whsec_...",
    compared with any "v1,<base64>" entry of the space-separated signature header."""
    key = base64.b64decode(secret.split("_", 1)[1])
    content = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + body
    expected = base64.b64encode(hmac.new(key, content, hashlib.sha256).digest()).decode()
    for entry in headers["webhook-signature"].split(" "):
        version, _, signature = entry.partition(",")
        if version == "v1" and hmac.compare_digest(signature, expected):
            return True
    return False


async def test_webhooks_get_matching_events_signed(
    admin: httpx.AsyncClient, clean_app: FastAPI, receiver: Receiver, delivering: Worker
) -> None:
    r = await admin.post(
        "/api/v1/webhooks",
        json={"url": receiver.url("/ok/hook"), "events": ["task.status.*", "taskgroup.#"]},
    )
    assert r.status_code == 201, r.text
    secret = r.json()["secret"]
    r = await admin.post(
        "/api/v1/webhooks",
        json={"url": receiver.url("/ok/off"), "events": ["#"], "enabled": False},
    )
    assert r.status_code == 201, r.text
    await make_template(admin)
    task = await _task(admin)  # task.created: not subscribed
    await _done(admin, task)
    await receiver.wait_for(lambda: len(receiver.to("/ok/hook")) == 1)
    await asyncio.sleep(0.5)
    [hook] = receiver.received
    assert hook.method == "POST"
    envelope = json.loads(hook.body)
    assert envelope["type"] == "task.status.done"
    assert envelope["task"]["id"] == task["id"]
    assert envelope["task"]["status"] == "done"
    assert hook.headers["webhook-id"] == envelope["id"]
    assert abs(int(hook.headers["webhook-timestamp"]) - time.time()) < 60
    assert _verify_standard_webhook(secret, hook.headers, hook.body)
    assert not _verify_standard_webhook(secret, hook.headers, hook.body + b" ")
    assert (await _event_ids(clean_app, task["id"], "task.status.done")) == [envelope["id"]]


async def test_two_workers_share_the_work_and_send_each_callback_once(
    admin: httpx.AsyncClient, clean_app: FastAPI, receiver: Receiver
) -> None:
    """Two embedded workers (own engines) on one database: every callback sent exactly once."""
    await make_template(admin)
    items = [
        {
            "template": "glandula_pinealis",
            "content": {"n": n},
            "users": ["admin"],
            "callback_url": receiver.url(f"/ok/{n}"),
            "callback_content": "{}",
        }
        for n in range(300)
    ]
    r = await admin.post("/api/v1/tasks/bulk", json={"tasks": items})
    assert r.status_code == 201, r.text
    settings = clean_app.state.settings.model_copy(update={**FAST_RETRIES, "amqp_url": None})
    workers = [Worker(settings, broker=False, sweep=False) for _ in range(2)]
    for worker in workers:
        await worker.start()
    try:
        for uri in r.json()["tasks"]:
            assert (await admin.put(uri, json={"status": "done"})).status_code == 200
        await receiver.wait_for(lambda: len(receiver.received) >= 300)
        await asyncio.sleep(1.0)
    finally:
        for worker in workers:
            await worker.stop()
    paths = [request.path for request in receiver.received]
    assert len(paths) == 300
    assert len(set(paths)) == 300


async def test_a_claim_reaches_webhooks_like_any_other_change(
    admin: httpx.AsyncClient, receiver: Receiver, delivering: Worker
) -> None:
    r = await admin.post(
        "/api/v1/webhooks", json={"url": receiver.url("/ok/locks"), "events": ["task.locked"]}
    )
    assert r.status_code == 201, r.text
    await make_template(admin)
    task = await _task(admin)
    claimed = await admin.post("/api/v1/tasks/claim")
    assert claimed.status_code == 200, claimed.text
    await receiver.wait_for(lambda: len(receiver.to("/ok/locks")) == 1)
    envelope = json.loads(receiver.to("/ok/locks")[0].body)
    assert envelope["type"] == "task.locked"
    assert envelope["task"]["id"] == task["id"]
    assert envelope["task"]["lock_holder"] == "admin"
    assert envelope["task"]["previous_status"] == "queued"


async def test_a_redirect_is_not_followed_and_a_binary_answer_is_recorded(
    admin: httpx.AsyncClient, receiver: Receiver, delivering: Worker
) -> None:
    """A 302 (XNAT's answer to an expired login) is no delivery: httpx would repeat the PUT
    as a GET without its body. An answer with NUL bytes is recorded, truncated, without them."""
    await make_template(admin)
    redirected = await _task(
        admin, callback_url=receiver.url("/redirect/cb"), callback_content="{}"
    )
    binary = await _task(admin, callback_url=receiver.url("/binary/cb"), callback_content="{}")
    await _done(admin, redirected)
    await _done(admin, binary)
    failed = await _delivery(admin, redirected["id"], "failed")
    assert failed["last_status_code"] == 302
    assert receiver.to("/ok/login") == []
    delivered = await _delivery(admin, binary["id"], "delivered")
    [attempt] = delivered["attempts_log"]
    assert attempt["response"].startswith("ab" + "ab")
    assert "\x00" not in attempt["response"]
    assert len(attempt["response"]) <= 1024
