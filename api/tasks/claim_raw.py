"""Claim next, the hot path: written for the database it runs on.

PostgreSQL runs the whole claim as one statement (api/tasks/claim_pg.py); SQLite as one
function on the connection's thread (api/tasks/claim_sqlite.py). MariaDB/MySQL (no
UPDATE ... RETURNING) run the generic path's SELECT ... SKIP LOCKED and UPDATE, then read
the row, its snapshot and links, on the pool's raw aiomysql connection, with the statements
compiled once. Claims that filter by template, group or tags resolve those references
through the ORM and take the generic path (api/tasks/claim.py).
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from sqlalchemy import bindparam, select
from sqlmodel import col

from api.deps import actor_of
from api.tasks import claim_pg, claim_sqlite
from api.tasks.claim import (
    LOCK_BY_ID,
    OUTBOX_INSERT,
    TASK_COLUMNS,
    locked_event,
    next_task,
    prepare,
    task_from_row,
)
from api.tasks.read import LINKS, links_from, task_read_from
from api.tasks.schemas import ClaimRequest, TaskRead
from shared import precompiled
from shared.models import Tag, Task, TaskTag, TaskTemplate, User
from shared.status import TaskStatus
from shared.taskevents import snapshot_from


def applies(app: FastAPI, data: ClaimRequest) -> bool:
    """No reference to resolve."""
    return (
        app.state.engine.dialect.name in ("postgresql", "mysql", "sqlite")
        and data.template is None
        and data.group is None
        and not data.tags
    )


async def claim(request: Request, data: ClaimRequest) -> TaskRead | None:
    backend = request.app.state.engine.dialect.name
    if backend == "mysql":
        return await claim_mysql(request, data)
    if backend == "sqlite":
        return await claim_sqlite.claim(request, data)
    return await claim_pg.claim(request, data)


# The locked task with its template label, holder name and tag names (a row per tag).
_holder = User.__table__.alias("holder")  # type: ignore[attr-defined]
TASK_AND_SNAPSHOT = (
    select(*TASK_COLUMNS, col(TaskTemplate.label), _holder.c.username, col(Tag.name))
    .join(TaskTemplate, col(TaskTemplate.id) == col(Task.template_id))
    .outerjoin(_holder, _holder.c.id == col(Task.lock_holder_id))
    .outerjoin(TaskTag, col(TaskTag.task_id) == col(Task.id))
    .outerjoin(Tag, col(Tag.id) == col(TaskTag.tag_id))
    .where(col(Task.id) == bindparam("p_task_id"))
)


async def claim_mysql(request: Request, data: ClaimRequest) -> TaskRead | None:
    settings = request.app.state.settings
    async with request.app.state.engine.connect() as connection:
        raw = (await connection.get_raw_connection()).driver_connection
        assert raw is not None

        async def fetch(statement: Any, **params: Any) -> list[Any]:
            return await precompiled.mysql_fetch(raw, statement, **params)

        # No BEGIN: the connection is not in autocommit mode, so the first statement opens
        # the transaction (one round trip less).
        try:
            actor = await actor_of(request, fetch)
            prepared = await prepare(None, actor, data, settings.lock_ttl_seconds)
            picked = await fetch(next_task(prepared.shape), **prepared.params) if prepared else []
            if prepared is None or not picked:
                await raw.rollback()
                return None
            task_id = picked[0][0]
            await fetch(LOCK_BY_ID, **prepared.params, p_task_id=task_id)
            rows = await fetch(TASK_AND_SNAPSHOT, p_task_id=task_id)
            n = len(TASK_COLUMNS)
            task = task_from_row(rows[0][:n], precompiled.utc)
            snapshot = snapshot_from(task, [r[n:] for r in rows], TaskStatus.queued.value)
            links = links_from(await fetch(LINKS, t=task.id))
            await fetch(OUTBOX_INSERT, **locked_event(actor.username, task, snapshot))
            await raw.commit()
        except BaseException:
            await raw.rollback()
            raise
    return task_read_from(task, links)
