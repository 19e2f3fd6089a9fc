"""Small helpers for API tests."""

from __future__ import annotations

from typing import Any

import httpx
from fastapi import FastAPI
from sqlalchemy import select, update

from shared.models import OutboxEvent, Task, utcnow

TEMPLATE_TEXT = "template_name: glandula_pinealis\ncontexts: []\n"


async def make_template(admin: httpx.AsyncClient, label: str = "glandula_pinealis") -> str:
    r = await admin.post("/api/v1/task_templates", json={"label": label, "content": TEMPLATE_TEXT})
    assert r.status_code == 201, r.text
    return str(r.json()["uri"])


async def make_group(admin: httpx.AsyncClient, groupname: str, members: list[str]) -> str:
    r = await admin.post(
        "/api/v1/groups", json={"groupname": groupname, "name": groupname, "members": members}
    )
    assert r.status_code == 201, r.text
    return str(r.json()["uri"])


async def make_task(admin: httpx.AsyncClient, **fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "project": "pinealis",
        "template": "glandula_pinealis",
        "content": {"scan_sources": {"T1": "http://xnat/scan"}},
    }
    body.update(fields)
    r = await admin.post("/api/v1/tasks", json=body)
    assert r.status_code == 201, r.text
    result: dict[str, Any] = r.json()
    return result


async def expire_lock(app: FastAPI, task_id: int) -> None:
    """Make the task's lease run out now (as if its TTL had passed)."""
    async with app.state.sessions() as session:
        await session.execute(
            update(Task).where(Task.id == task_id).values(lock_expires_at=utcnow())
        )
        await session.commit()


async def events(app: FastAPI, task_id: int | None = None) -> list[OutboxEvent]:
    async with app.state.sessions() as session:
        query = select(OutboxEvent).order_by(OutboxEvent.id)
        if task_id is not None:
            query = query.where(OutboxEvent.task_id == task_id)
        return list(await session.scalars(query))
