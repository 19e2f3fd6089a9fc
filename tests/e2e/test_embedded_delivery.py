"""The embedded start (`taskmanager serve`, no broker) calls back and signs webhooks itself."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.e2e.conftest import Server
from tests.receiver import ThreadedReceiver, wait_until

pytestmark = pytest.mark.e2e


def test_embedded_serve_delivers_callbacks_and_webhooks(embedded_server: Server) -> None:
    with (
        ThreadedReceiver() as receiver,
        httpx.Client(base_url=embedded_server.base_url, auth=("admin", "admin")) as admin,
    ):
        r = admin.post(
            "/api/v1/webhooks", json={"url": receiver.url("/ok/hook"), "events": ["task.#"]}
        )
        assert r.status_code == 201, r.text
        r = admin.post("/api/v1/task_templates", json={"label": "t", "content": "a: 1"})
        assert r.status_code == 201, r.text
        r = admin.post(
            "/api/v1/tasks",
            json={
                "template": "t",
                "content": {},
                "users": ["admin"],
                "callback_url": receiver.url("/ok/callback"),
                "callback_content": '{"experiment": "E1"}',
            },
        )
        assert r.status_code == 201, r.text
        task = r.json()
        assert admin.put(task["uri"], json={"status": "done"}).status_code == 200
        wait_until(
            lambda: len(receiver.to("/ok/callback")) == 1 and len(receiver.to("/ok/hook")) == 2,
            30,
            "the callback and two webhook posts",
        )
        [callback] = receiver.to("/ok/callback")
        assert json.loads(callback.body) == {"experiment": "E1"}
        hooks = [json.loads(h.body)["type"] for h in receiver.to("/ok/hook")]
        assert sorted(hooks) == ["task.created", "task.status.done"]
        assert all("webhook-signature" in h.headers for h in receiver.to("/ok/hook"))
        # The receiver has them; the worker records the results a moment later.
        wait_until(
            lambda: (
                admin.get("/api/v1/deliveries", params={"status": "delivered"}).json()[
                    "total_deliveries"
                ]
                == 3
            ),
            30,
            "three deliveries recorded as delivered",
        )
