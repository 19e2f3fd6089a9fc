"""The outbox relay: every event reaches the `taskmanager.events` exchange, in order, once."""

from __future__ import annotations

import asyncio
import json
from collections import defaultdict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

import aio_pika
import httpx
from aio_pika.abc import AbstractIncomingMessage
from fastapi import FastAPI
from sqlalchemy import func, select

from shared.db import create_engine
from shared.events.topology import EVENT_TYPES, declare_exchange
from shared.models import OutboxEvent, utcnow
from shared.taskevents import sweep_expired_leases
from tests.api.helpers import expire_lock, make_template
from tests.conftest import UserFactory
from worker import outbox
from worker.relay import Relay
from worker.wakeup import Wakeup

SNAPSHOT_KEYS = {
    "id",
    "uri",
    "project",
    "template",
    "status",
    "previous_status",
    "lock_holder",
    "tags",
    "tracking_id",
    "callback_url",
}


@asynccontextmanager
async def listening(url: str) -> AsyncIterator[list[AbstractIncomingMessage]]:
    """A queue of our own bound to every routing key; yields what arrives."""
    connection = await aio_pika.connect(url)
    received: list[AbstractIncomingMessage] = []

    async def keep(message: AbstractIncomingMessage) -> None:
        received.append(message)
        await message.ack()

    async with connection:
        channel = await connection.channel()
        exchange = await declare_exchange(channel)
        queue = await channel.declare_queue(exclusive=True, auto_delete=True)
        await queue.bind(exchange, routing_key="#")
        await queue.consume(keep)
        yield received


@asynccontextmanager
async def relays(app: FastAPI, url: str, count: int = 1) -> AsyncIterator[list[Relay]]:
    settings = app.state.settings
    engines = [create_engine(settings.async_database_url) for _ in range(count)]
    connections = [await aio_pika.connect_robust(url) for _ in range(count)]
    running = [
        Relay(engine, connection, Wakeup(settings.async_database_url, 0.05), batch=100)
        for engine, connection in zip(engines, connections, strict=True)
    ]
    tasks = [asyncio.create_task(relay.run()) for relay in running]
    try:
        yield running
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for relay in running:
            await relay.wakeup.close()
        for connection in connections:
            await connection.close()
        for engine in engines:
            await engine.dispose()


async def _until(condition: Any, seconds: float = 30.0) -> None:
    for _ in range(int(seconds / 0.05)):
        if condition():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("timed out")


async def _every_kind_of_change(
    admin: httpx.AsyncClient, make_user: UserFactory, app: FastAPI
) -> None:
    await make_template(admin)
    jdoe = await make_user("jdoe")
    base = {"project": "p", "template": "glandula_pinealis", "content": {}, "users": ["jdoe"]}

    async def task(**extra: Any) -> dict[str, Any]:
        r = await admin.post("/api/v1/tasks", json=base | extra)
        assert r.status_code == 201, r.text
        return dict(r.json())

    first = await task(tracking_id="T1", callback_url="http://example.org/cb")
    assert (await admin.put(first["uri"], json={"content": {"v": 2}})).status_code == 200
    assert (await jdoe.put(first["lock"])).status_code == 200
    assert (await jdoe.delete(first["lock"])).status_code == 200
    assert (await jdoe.put(first["lock"])).status_code == 200
    await expire_lock(app, first["id"])
    assert await sweep_expired_leases(app.state.sessions) == 1
    assert (await jdoe.put(first["uri"], json={"status": "done"})).status_code == 200
    assert (await admin.put(first["uri"], json={"status": "queued"})).status_code == 200
    for end in ("aborted", "failed"):
        other = await task()
        assert (await jdoe.put(other["uri"], json={"status": end})).status_code == 200
    assert (await admin.delete(first["uri"])).status_code == 204
    for label, end in (("g-done", "done"), ("g-aborted", "aborted")):
        r = await admin.post(
            "/api/v1/taskgroups",
            json={"label": label, "tasks": [base | {"content": {"g": label}}]},
        )
        assert r.status_code == 201, r.text
        member = r.json()["tasks"][0]
        assert (await jdoe.put(member["uri"], json={"status": end})).status_code == 200


async def test_every_event_type_reaches_the_exchange_with_its_envelope_in_order(
    admin: httpx.AsyncClient, make_user: UserFactory, clean_app: FastAPI, amqp_url: str
) -> None:
    async with listening(amqp_url) as received, relays(clean_app, amqp_url):
        await _every_kind_of_change(admin, make_user, clean_app)
        async with clean_app.state.sessions() as session:
            written = await session.scalar(select(func.count()).select_from(OutboxEvent))
        await _until(lambda: len(received) >= (written or 0))
        await asyncio.sleep(0.3)

    assert len(received) == written
    assert {m.routing_key for m in received} == set(EVENT_TYPES)
    sequences: dict[int, list[int]] = defaultdict(list)
    for message in received:
        envelope = json.loads(message.body)
        assert message.routing_key == envelope["type"]
        assert message.message_id == envelope["id"]
        assert message.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
        assert message.content_type == "application/json"
        assert {"id", "type", "occurred_at", "sequence", "actor"} <= envelope.keys()
        if envelope["type"].startswith("taskgroup."):
            assert envelope["taskgroup"]["status"] == envelope["type"].split(".")[1]
            continue
        assert envelope["task"].keys() >= SNAPSHOT_KEYS
        sequences[envelope["task"]["id"]].append(envelope["sequence"])
    for task_id, seen in sequences.items():
        assert seen == sorted(set(seen)), f"task {task_id}: sequences out of order {seen}"
    types = [json.loads(m.body)["type"] for m in received if json.loads(m.body).get("task")]
    assert types[:9] == [
        "task.created",
        "task.updated",
        "task.locked",
        "task.unlocked",
        "task.locked",
        "task.lock_expired",
        "task.status.done",
        "task.status.queued",
        "task.created",
    ]
    async with clean_app.state.sessions() as session:
        unpublished = await session.scalar(
            select(func.count()).where(OutboxEvent.published_at.is_(None))  # type: ignore[union-attr]
        )
    assert unpublished == 0


async def test_two_relays_publish_every_event_exactly_once(
    admin: httpx.AsyncClient, clean_app: FastAPI, amqp_url: str
) -> None:
    await make_template(admin)
    items = [
        {"template": "glandula_pinealis", "content": {"n": i}, "users": ["admin"]}
        for i in range(1500)
    ]
    r = await admin.post("/api/v1/tasks/bulk", json={"tasks": items})
    assert r.status_code == 201, r.text
    async with listening(amqp_url) as received, relays(clean_app, amqp_url, count=2) as both:
        await _until(lambda: len(received) >= 1500, 60)
        await asyncio.sleep(0.5)
        published = [relay.published for relay in both]
    ids = [m.message_id for m in received]
    assert len(ids) == 1500
    assert len(set(ids)) == 1500
    assert sum(published) == 1500


async def test_published_rows_are_purged_and_unpublished_ones_kept(
    admin: httpx.AsyncClient, clean_app: FastAPI
) -> None:
    await make_template(admin)
    for n in range(3):
        r = await admin.post(
            "/api/v1/tasks",
            json={"template": "glandula_pinealis", "content": {"n": n}, "users": ["admin"]},
        )
        assert r.status_code == 201, r.text
    engine = clean_app.state.engine
    async with engine.begin() as connection:
        first_two = [row.id for row in await outbox.take(connection, 2)]
        await outbox.mark_published(connection, first_two)
    async with engine.begin() as connection:
        assert await outbox.purge_published(connection, utcnow() - timedelta(hours=1)) == 0
        assert await outbox.purge_published(connection, utcnow() + timedelta(seconds=1)) == 2
    async with engine.begin() as connection:
        left = await outbox.take(connection, 10)
    assert len(left) == 1
    assert left[0].id not in first_two
