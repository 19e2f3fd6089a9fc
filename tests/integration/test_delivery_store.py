"""Making deliveries from events (worker/store.py) on every database: each (event, target)
once, and `create` returns exactly the deliveries made by that call.

PostgreSQL and SQLite learn which rows were made from INSERT ... ON CONFLICT DO NOTHING
RETURNING; MariaDB reads them back by their owner. Both must give what a read-back gives.
"""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from typing import Any

import httpx
from fastapi import FastAPI
from sqlalchemy import func, insert, select, update

from shared.delivery.policy import RetryPolicy
from shared.models import Delivery, DeliveryAttempt, utcnow
from worker import store

_D = Delivery.__table__  # type: ignore[attr-defined]


def _done_event(task_id: int, callback_url: str | None = "http://rx.test/cb") -> str:
    return json.dumps(
        {
            "id": str(uuid.uuid4()),
            "type": "task.status.done",
            "occurred_at": "2026-05-04T10:00:00.123456+00:00",
            "sequence": 3,
            "actor": "admin",
            "task": {"id": task_id, "callback_url": callback_url, "status": "done"},
        }
    )


async def _create(app: FastAPI, payloads: list[str], owner: str) -> list[store.Claimed]:
    async with app.state.engine.begin() as connection:
        return await store.create(
            connection, payloads, store.Webhooks(), owner, RetryPolicy(), claim_seconds=60
        )


async def _read_back(app: FastAPI, ids: list[int]) -> list[store.Claimed]:
    async with app.state.engine.connect() as connection:
        rows = await connection.execute(select(*store._COLUMNS).where(_D.c.id.in_(ids)))
        return sorted((store.Claimed(*row) for row in rows), key=lambda d: d.id)


async def _count(app: FastAPI) -> int:
    async with app.state.engine.connect() as connection:
        return int((await connection.execute(select(func.count()).select_from(_D))).scalar_one())


async def _subscribe(admin: httpx.AsyncClient, url: str, events: list[str]) -> dict[str, Any]:
    r = await admin.post("/api/v1/webhooks", json={"url": url, "events": events})
    assert r.status_code == 201, r.text
    return dict(r.json())


async def test_create_returns_exactly_the_deliveries_it_made(
    admin: httpx.AsyncClient, clean_app: FastAPI
) -> None:
    hook = await _subscribe(admin, "http://hooks.test/all", ["task.status.*"])
    first, second = _done_event(101), _done_event(102)

    made = await _create(clean_app, [first], "worker-a:1")
    assert {(d.event_id, d.webhook_id) for d in made} == {
        (json.loads(first)["id"], None),
        (json.loads(first)["id"], hook["id"]),
    }
    assert {d.claimed_by for d in made} == {"worker-a:1"}
    assert {d.attempts for d in made} == {0}
    # What create returns is what the database holds, to the microsecond.
    assert sorted(made, key=lambda d: d.id) == await _read_back(clean_app, [d.id for d in made])

    # The first event again (a redelivered message) with a new one: only the new one's.
    again = await _create(clean_app, [first, second], "worker-b:2")
    assert {d.event_id for d in again} == {json.loads(second)["id"]}
    assert len(again) == 2
    assert {d.claimed_by for d in again} == {"worker-b:2"}
    assert sorted(again, key=lambda d: d.id) == await _read_back(clean_app, [d.id for d in again])
    # The first event's deliveries keep their first owner.
    assert {d.claimed_by for d in await _read_back(clean_app, [d.id for d in made])} == {
        "worker-a:1"
    }

    # Both redelivered: nothing is made, nothing is returned.
    assert await _create(clean_app, [second, first], "worker-c:3") == []
    assert await _count(clean_app) == 4


async def test_an_event_twice_in_one_batch_makes_its_deliveries_once(
    clean_app: FastAPI,
) -> None:
    event = _done_event(7)
    made = await _create(clean_app, [event, event], "worker-a:1")
    assert len(made) == 1
    assert made[0].url == "http://rx.test/cb"
    assert made[0].method == "PUT"
    assert await _count(clean_app) == 1
    assert made == await _read_back(clean_app, [made[0].id])


async def test_events_that_ask_for_nothing_make_nothing(clean_app: FastAPI) -> None:
    no_url = _done_event(8, callback_url=None)
    malformed = '{"type": "task.status.done"}'
    assert await _create(clean_app, [no_url, malformed, "not json"], "worker-a:1") == []
    assert await _count(clean_app) == 0


async def test_purge_deletes_only_deliveries_delivered_before_the_cutoff(
    clean_app: FastAPI,
) -> None:
    made = await _create(clean_app, [_done_event(n) for n in range(1, 6)], "worker-a:1")
    old_delivered, new_delivered, old_failed, old_pending, _ = (d.id for d in made)
    now = utcnow()
    cutoff = now - timedelta(days=30)
    long_ago = now - timedelta(days=40)
    _A = DeliveryAttempt.__table__  # type: ignore[attr-defined]
    async with clean_app.state.engine.begin() as connection:
        for id_, status, delivered_at, updated in (
            (old_delivered, "delivered", long_ago, long_ago),
            (new_delivered, "delivered", now, now),
            (old_failed, "failed", None, long_ago),
            (old_pending, "pending", None, long_ago),
        ):
            await connection.execute(
                update(_D)
                .where(_D.c.id == id_)
                .values(status=status, delivered_at=delivered_at, updated_at=updated)
            )
        await connection.execute(
            insert(_A),
            [
                {"delivery_id": id_, "attempted_at": long_ago, "duration_ms": 1.0}
                for id_ in (old_delivered, old_delivered, new_delivered, old_failed)
            ],
        )

    async with clean_app.state.engine.begin() as connection:
        assert await store.purge_delivered(connection, cutoff, batch=1) == 1
    async with clean_app.state.engine.begin() as connection:
        assert await store.purge_delivered(connection, cutoff) == 0

    async with clean_app.state.engine.connect() as connection:
        left = set((await connection.scalars(select(_D.c.id))).all())
        attempts = sorted((await connection.scalars(select(_A.c.delivery_id))).all())
    assert left == {d.id for d in made} - {old_delivered}
    assert attempts == sorted([new_delivered, old_failed])
