"""Claim next on PostgreSQL, the hot path: the same statements, on the raw connection.

Readers' clients claim in a tight loop, so this request is written for the database it runs
on. The statements are those of the generic path (principal lookup, the claim's UPDATE ...
RETURNING, the event snapshot, the task's links, the outbox insert), compiled once for
asyncpg and run in one transaction on the pool's raw connection, without the ORM's
per-call work. Claims that filter by template, group or tags resolve those references
through the ORM and take the generic path.
"""

from __future__ import annotations

from typing import Any

from fastapi import Request
from sqlalchemy import bindparam, insert
from sqlalchemy.ext.asyncio import AsyncEngine

from api.auth.service import AnySelect
from api.deps import actor_of
from api.tasks.claim import claim_returning, prepare, task_from_row
from api.tasks.read import LINKS, links_from, task_read_from
from api.tasks.schemas import ClaimRequest, TaskRead
from shared import precompiled
from shared.events.outbox import event_values
from shared.models import OutboxEvent
from shared.status import TaskStatus
from shared.taskevents import SNAPSHOT, snapshot_from, snapshot_params

EVENT_COLUMNS = (
    "event_id",
    "type",
    "task_id",
    "taskgroup_id",
    "sequence",
    "payload",
    "occurred_at",
)
OUTBOX_INSERT = insert(OutboxEvent).values({name: bindparam(f"v_{name}") for name in EVENT_COLUMNS})


def applies(engine: AsyncEngine, data: ClaimRequest) -> bool:
    """PostgreSQL, and no reference to resolve."""
    return (
        engine.dialect.name == "postgresql"
        and data.template is None
        and data.group is None
        and not data.tags
    )


async def claim(request: Request, data: ClaimRequest) -> TaskRead | None:
    engine: AsyncEngine = request.app.state.engine
    settings = request.app.state.settings
    async with engine.connect() as connection:
        raw = (await connection.get_raw_connection()).driver_connection
        assert raw is not None

        async def fetch(statement: AnySelect, **params: Any) -> list[Any]:
            return await precompiled.fetch(raw, statement, **params)

        async with raw.transaction():
            actor = await actor_of(request, fetch)
            prepared = await prepare(None, actor, data, settings.lock_ttl_seconds)
            if prepared is None:
                return None
            rows = await precompiled.fetch(raw, claim_returning(prepared.shape), **prepared.params)
            if not rows:
                return None
            task = task_from_row(rows[0], precompiled.utc)
            snapshot = snapshot_from(
                task,
                await precompiled.fetch(raw, SNAPSHOT, **snapshot_params(task)),
                TaskStatus.queued.value,
            )
            links = links_from(await precompiled.fetch(raw, LINKS, t=task.id))
            event = event_values(
                "task.locked",
                actor=actor.username,
                snapshot=snapshot,
                task_id=task.id,
                sequence=task.event_sequence,
            )
            await precompiled.execute(
                raw, OUTBOX_INSERT, **{f"v_{name}": event[name] for name in EVENT_COLUMNS}
            )
    return task_read_from(task, links)
