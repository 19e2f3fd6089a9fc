from __future__ import annotations

import asyncio
from typing import Any

import httpx
from fastapi import FastAPI

from api.app import create_app
from cli.serve import lease_sweeper
from tests.api.helpers import events, expire_lock, make_task, make_template
from tests.conftest import ADMIN, UserFactory, client_for, make_settings, running


async def test_sweeper_returns_expired_tasks_to_the_queue(
    clean_app: FastAPI, admin: httpx.AsyncClient, make_user: UserFactory, tmp_path: Any
) -> None:
    reader = await make_user("jdoe")
    await make_template(admin)
    task = await make_task(admin, users=["jdoe"])
    assert (await reader.put(task["lock"])).status_code == 200
    await expire_lock(clean_app, task["id"])

    settings = make_settings(
        clean_app.state.settings.database_url, str(tmp_path), sweep_interval_seconds=0.05
    )
    app = create_app(settings, run_bootstrap=False, services=[lease_sweeper])
    async with running(app):
        # Nobody touches the task: only the sweeper can return it.
        for _ in range(100):
            types = [e.type for e in await events(clean_app, task["id"])]
            if "task.lock_expired" in types:
                break
            await asyncio.sleep(0.05)
    assert types[-1] == "task.lock_expired"
    async with client_for(clean_app, ADMIN) as client:
        body = (await client.get(task["uri"])).json()
    assert body["status"] == "queued"
    assert body["lock_holder"] is None
    # The event names the holder whose lease ran out.
    expired = (await events(clean_app, task["id"]))[-1]
    assert '"lock_holder":"jdoe"' in expired.payload
