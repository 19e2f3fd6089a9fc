"""api/hotpaths.py: the claim and the status-only PUT answered beside FastAPI's routing.

What the fast paths decline reaches the application with its body; their errors read as
the application's; they work behind a reverse-proxy prefix; and writes wake the relays.
"""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select

from api import hotpaths
from api.errors import PROBLEM_JSON
from shared.events.notify import CHANNEL
from shared.models import Task
from tests.api.helpers import make_group, make_task, make_template
from tests.api.test_errors_and_limits import small_app
from tests.conftest import ADMIN, READER_PASSWORD, UserFactory, client_for


async def _locked(app: FastAPI) -> int:
    async with app.state.sessions() as session:
        count = await session.scalar(select(func.count()).where(Task.status == "locked"))
    return int(count or 0)


def _problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM_JSON
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    return body


async def _queue(admin: httpx.AsyncClient, make_user: UserFactory) -> httpx.AsyncClient:
    reader = await make_user("jdoe")
    await make_template(admin)
    await make_group(admin, "neuro", ["jdoe"])
    for _ in range(2):
        await make_task(admin, groups=["neuro"])
    return reader


@pytest.mark.parametrize(
    ("content", "headers"),
    [
        (b"{not json", {"content-type": "application/json"}),
        (b'{"project": 5}', {"content-type": "application/json"}),
        (b'{"colour": "red"}', {"content-type": "application/json"}),
        (b"project=pinealis", {"content-type": "application/x-www-form-urlencoded"}),
    ],
    ids=["malformed", "wrong-type", "unknown-field", "form"],
)
async def test_a_claim_body_the_fast_path_declines_gets_the_apps_answer(
    admin: httpx.AsyncClient,
    make_user: UserFactory,
    clean_app: FastAPI,
    content: bytes,
    headers: dict[str, str],
) -> None:
    reader = await _queue(admin, make_user)
    r = await reader.post("/api/v1/tasks/claim", content=content, headers=headers)
    assert 400 <= r.status_code < 500, r.text
    assert r.headers["content-type"] == PROBLEM_JSON
    assert await _locked(clean_app) == 0
    # The same reader's valid claim still works, with or without a body.
    assert (await reader.post("/api/v1/tasks/claim")).status_code == 200
    assert (await reader.post("/api/v1/tasks/claim", json={})).status_code == 200
    assert (await reader.post("/api/v1/tasks/claim", json={})).status_code == 204


async def test_a_declined_status_change_reaches_the_app_with_its_body(
    admin: httpx.AsyncClient, make_user: UserFactory
) -> None:
    reader = await _queue(admin, make_user)
    claimed = (await reader.post("/api/v1/tasks/claim")).json()
    # A precondition in If-Match: the generic path checks it.
    stale = {"If-Match": str(claimed["lock_version"] + 1)}
    _problem(await reader.put(claimed["uri"], json={"status": "done"}, headers=stale), 409)
    current = {"If-Match": str(claimed["lock_version"])}
    r = await reader.put(claimed["uri"], json={"status": "done"}, headers=current)
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "done"
    # Status and another field: the generic path applies both.
    listed = await admin.get("/api/v1/tasks", params={"status": "queued", "scope": "all"})
    queued = listed.json()["tasks"][0]["uri"]
    r = await admin.put(queued, json={"status": "queued", "priority": 7})
    assert r.status_code == 200, r.text
    assert r.json()["priority"] == 7
    # An unknown field is refused as the route refuses it, and changes nothing.
    other = (await reader.post("/api/v1/tasks/claim")).json()
    r = await reader.put(other["uri"], json={"status": "done", "colour": "red"})
    _problem(r, 422)
    assert (await reader.get(other["uri"])).json()["status"] == "locked"


async def test_a_status_change_through_the_fast_path(
    admin: httpx.AsyncClient, make_user: UserFactory, backend: str
) -> None:
    reader = await _queue(admin, make_user)
    claimed = (await reader.post("/api/v1/tasks/claim")).json()
    r = await reader.put(claimed["uri"], json={"status": "done"})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/json"
    assert r.json() == (await reader.get(claimed["uri"])).json()
    assert r.json()["status"] == "done"
    # Beyond any id the database holds: 404 from the application, as any unknown id.
    _problem(await reader.put("/api/v1/tasks/99999999", json={"status": "done"}), 404)


async def test_fast_path_errors_read_as_the_apps(
    admin: httpx.AsyncClient,
    anon: httpx.AsyncClient,
    make_user: UserFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    await _queue(admin, make_user)
    bad = {"Authorization": "Bearer not-a-token"}
    assert "detail" in _problem(await anon.post("/api/v1/tasks/claim", headers=bad), 401)
    basic = ("jdoe", "wrong-password")
    assert _problem(await anon.post("/api/v1/tasks/claim", auth=basic), 401)

    async def down(*_: Any) -> None:
        raise ConnectionRefusedError("database down")

    monkeypatch.setattr(hotpaths.claim_raw, "claim", down)
    reader = ("jdoe", READER_PASSWORD)
    r = await anon.post("/api/v1/tasks/claim", auth=reader)
    _problem(r, 503)
    assert r.headers["retry-after"] == "1"

    async def broken(*_: Any) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(hotpaths.claim_raw, "claim", broken)
    assert _problem(await anon.post("/api/v1/tasks/claim", auth=reader), 500)["detail"] == (
        "Internal server error"
    )


@pytest.mark.parametrize("request_prefix", ["", "/taskmanager"])
async def test_hot_paths_behind_a_prefix(
    clean_app: FastAPI, make_user: UserFactory, tmp_path: Any, request_prefix: str
) -> None:
    async with (
        small_app(clean_app, str(tmp_path), root_path="/taskmanager") as app,
        client_for(app, ADMIN) as admin,
        client_for(app, ("jdoe", READER_PASSWORD)) as reader,
    ):
        await make_user("jdoe")
        await make_template(admin)
        await make_group(admin, "neuro", ["jdoe"])
        await make_task(admin, groups=["neuro"])
        r = await reader.post(f"{request_prefix}/api/v1/tasks/claim")
        assert r.status_code == 200, r.text
        uri = r.json()["uri"]
        assert uri.startswith("/taskmanager/api/v1/tasks/")
        done = await reader.put(
            f"{request_prefix}{uri.removeprefix('/taskmanager')}", json={"status": "done"}
        )
        assert done.status_code == 200, done.text
        assert done.json()["uri"] == uri


async def test_writes_wake_the_relays(
    admin: httpx.AsyncClient, clean_app: FastAPI, backend: str
) -> None:
    notifier = clean_app.state.outbox_notifier
    if backend != "postgresql":
        # No LISTEN/NOTIFY there: the relays poll, and the notifier stays idle.
        await make_template(admin)
        assert notifier.dsn is None
        assert notifier.sent == 0
        return
    listener = await asyncpg.connect(notifier.dsn)
    woken = asyncio.Event()
    interval = notifier.interval
    try:
        # No trigger notifies inside the writing transactions (migration 0004).
        triggers = "SELECT count(*) FROM pg_trigger WHERE tgname = 'outbox_events_notify'"
        assert await listener.fetchval(triggers) == 0
        await listener.add_listener(CHANNEL, lambda *_: woken.set())
        await make_template(admin)
        await asyncio.wait_for(woken.wait(), 10)
        # A burst of writes: one notification per interval, not one per commit.
        notifier.interval = 0.5
        await asyncio.sleep(interval * 2)
        sent = notifier.sent
        await asyncio.gather(*(make_task(admin, users=["admin"]) for _ in range(20)))
        # The NOTIFY goes out from a background task: give it time on a busy machine.
        for _ in range(100):
            if notifier.sent > sent:
                break
            await asyncio.sleep(0.05)
        assert 1 <= notifier.sent - sent < 20
    finally:
        notifier.interval = interval
        await listener.close()
