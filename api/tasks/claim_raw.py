"""Claim next, the hot path, on PostgreSQL and MariaDB: the same statements, raw.

Readers' clients claim in a tight loop, so this request is written for the database it runs
on. The claim's UPDATE ... RETURNING is the generic path's statement (api/tasks/claim.py),
wrapped so that the same round trip also returns what the event and TaskGet need (template
label, tag names and ids, users, groups, users via the groups). It is compiled once per
filter shape and runs, with the principal lookup and the outbox insert, in one transaction
on an asyncpg pool of its own, without the ORM's per-call work. MariaDB/MySQL (no UPDATE
... RETURNING) run the generic path's SELECT ... SKIP LOCKED and UPDATE, then read the row,
its snapshot and links, on the pool's raw aiomysql connection. Claims that filter by
template, group or tags resolve those references through the ORM and take the generic path.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import asyncpg
from fastapi import FastAPI, Request
from sqlalchemy import Select, bindparam, func, insert, select
from sqlalchemy.engine import make_url
from sqlmodel import col

from api.auth.service import AnySelect
from api.deps import actor_of
from api.tasks.claim import (
    LOCK_BY_ID,
    TASK_COLUMNS,
    Shape,
    claim_returning,
    next_task,
    prepare,
    task_from_row,
)
from api.tasks.read import LINKS, links_from, task_read_from
from api.tasks.schemas import ClaimRequest, TaskRead
from shared import precompiled
from shared.events.outbox import event_values
from shared.models import (
    GroupMember,
    OutboxEvent,
    Tag,
    Task,
    TaskGroupLink,
    TaskTag,
    TaskTemplate,
    TaskUser,
)
from shared.status import TaskStatus
from shared.taskevents import SNAPSHOT, snapshot_from, snapshot_of, snapshot_params

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


@lru_cache(maxsize=256)
def claim_and_read(shape: Shape) -> Select[Any]:
    claimed = claim_returning(shape).cte("claimed")
    task_id = claimed.c.id

    def ids(column: Any, *where: Any) -> Any:
        return select(func.array_agg(column)).where(*where).scalar_subquery()

    return select(
        *(claimed.c[c.name] for c in TASK_COLUMNS),
        select(col(TaskTemplate.label))
        .where(col(TaskTemplate.id) == claimed.c.template_id)
        .scalar_subquery(),
        select(func.array_agg(col(Tag.name)))
        .join(TaskTag, col(TaskTag.tag_id) == col(Tag.id))
        .where(col(TaskTag.task_id) == task_id)
        .scalar_subquery(),
        ids(col(TaskTag.tag_id), col(TaskTag.task_id) == task_id),
        ids(col(TaskUser.user_id), col(TaskUser.task_id) == task_id),
        ids(col(TaskGroupLink.group_id), col(TaskGroupLink.task_id) == task_id),
        select(func.array_agg(func.distinct(col(GroupMember.user_id))))
        .join(TaskGroupLink, col(TaskGroupLink.group_id) == col(GroupMember.group_id))
        .where(col(TaskGroupLink.task_id) == task_id)
        .scalar_subquery(),
    )


def applies(app: FastAPI, data: ClaimRequest) -> bool:
    """PostgreSQL or MariaDB/MySQL, and no reference to resolve."""
    return (
        app.state.engine.dialect.name in ("postgresql", "mysql")
        and data.template is None
        and data.group is None
        and not data.tags
    )


async def _pool(app: FastAPI) -> Any:
    pool = getattr(app.state, "claim_pool", None)
    if pool is None:
        url = make_url(app.state.settings.async_database_url).set(drivername="postgresql")
        pool = await asyncpg.create_pool(
            url.render_as_string(hide_password=False), min_size=1, max_size=15
        )
        if getattr(app.state, "claim_pool", None) is None:
            app.state.claim_pool = pool
        else:  # another request made one meanwhile
            await pool.close()
            pool = app.state.claim_pool
    return pool


async def close(app: FastAPI) -> None:
    pool = getattr(app.state, "claim_pool", None)
    if pool is not None:
        app.state.claim_pool = None
        await pool.close()


async def claim(request: Request, data: ClaimRequest) -> TaskRead | None:
    if request.app.state.engine.dialect.name == "mysql":
        return await claim_mysql(request, data)
    settings = request.app.state.settings
    pool = await _pool(request.app)
    async with pool.acquire() as raw, raw.transaction():

        async def fetch(statement: AnySelect, **params: Any) -> list[Any]:
            return await precompiled.fetch(raw, statement, **params)

        actor = await actor_of(request, fetch)
        prepared = await prepare(None, actor, data, settings.lock_ttl_seconds)
        if prepared is None:
            return None
        rows = await fetch(claim_and_read(prepared.shape), **prepared.params)
        if not rows:
            return None
        row = rows[0]
        n = len(TASK_COLUMNS)
        task = task_from_row(row[:n], precompiled.utc)
        label, tag_names, tag_ids, users, groups, via = row[n:]
        snapshot = snapshot_of(
            task, label, list(tag_names or []), actor.username, TaskStatus.queued.value
        )
        await precompiled.execute(
            raw, OUTBOX_INSERT, **_locked_event(actor.username, task, snapshot)
        )
    links = {
        "u": sorted(users or []),
        "g": sorted(groups or []),
        "v": sorted(via or []),
        "t": sorted(tag_ids or []),
    }
    return task_read_from(task, links)


def _locked_event(username: str, task: Task, snapshot: dict[str, Any]) -> dict[str, Any]:
    """The outbox row's parameters for the claim's `task.locked` event."""
    event = event_values(
        "task.locked",
        actor=username,
        snapshot=snapshot,
        task_id=task.id,
        sequence=task.event_sequence,
    )
    return {f"v_{name}": event[name] for name in EVENT_COLUMNS}


TASK_BY_ID = select(*TASK_COLUMNS).where(col(Task.id) == bindparam("p_task_id"))


async def claim_mysql(request: Request, data: ClaimRequest) -> TaskRead | None:
    settings = request.app.state.settings
    async with request.app.state.engine.connect() as connection:
        raw = (await connection.get_raw_connection()).driver_connection
        assert raw is not None

        async def fetch(statement: Any, **params: Any) -> list[Any]:
            return await precompiled.mysql_fetch(raw, statement, **params)

        await raw.begin()
        try:
            actor = await actor_of(request, fetch)
            prepared = await prepare(None, actor, data, settings.lock_ttl_seconds)
            picked = await fetch(next_task(prepared.shape), **prepared.params) if prepared else []
            if prepared is None or not picked:
                await raw.rollback()
                return None
            task_id = picked[0][0]
            await fetch(LOCK_BY_ID, **prepared.params, p_task_id=task_id)
            task = task_from_row((await fetch(TASK_BY_ID, p_task_id=task_id))[0], precompiled.utc)
            snapshot = snapshot_from(
                task,
                await fetch(SNAPSHOT, **snapshot_params(task)),
                TaskStatus.queued.value,
            )
            links = links_from(await fetch(LINKS, t=task.id))
            await fetch(OUTBOX_INSERT, **_locked_event(actor.username, task, snapshot))
            await raw.commit()
        except BaseException:
            await raw.rollback()
            raise
    return task_read_from(task, links)
