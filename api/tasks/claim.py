"""Claim next: atomically pick the caller's next task and lock it (SPEC section 2).

PostgreSQL runs one statement: `UPDATE ... WHERE id = (SELECT ... FOR UPDATE SKIP LOCKED)
RETURNING`, so concurrent claimers skip each other's rows instead of queueing on them.
SQLite runs the same statement (it drops FOR UPDATE: it has a single writer, and every
transaction starts with BEGIN IMMEDIATE). MariaDB/MySQL have no UPDATE ... RETURNING:
SELECT ... FOR UPDATE SKIP LOCKED, then the UPDATE, in one READ COMMITTED transaction.
"""

from __future__ import annotations

from sqlalchemy import ColumnElement, Select, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from api import lookup
from api.auth.service import Actor
from api.errors import Forbidden
from api.tasks.schemas import ClaimRequest
from api.tasks.visibility import visible_to
from shared.models import Tag, Task, TaskGroupLink, TaskTag, utcnow
from shared.status import TaskStatus
from shared.taskevents import emit, lease_until


async def _conditions(
    session: AsyncSession, actor: Actor, data: ClaimRequest
) -> list[ColumnElement[bool]] | None:
    conds = [col(Task.status) == TaskStatus.queued.value, visible_to(actor.id, actor.weight)]
    if data.project is not None:
        conds.append(col(Task.project) == data.project)
    if data.application_name is not None:
        conds.append(col(Task.application_name) == data.application_name)
    if data.template is not None:
        conds.append(col(Task.template_id) == (await lookup.template(session, data.template)).id)
    if data.group is not None:
        group = await lookup.group(session, data.group)
        conds.append(
            col(Task.id).in_(
                select(col(TaskGroupLink.task_id)).where(col(TaskGroupLink.group_id) == group.id)
            )
        )
    for name in dict.fromkeys(data.tags):
        tag_id = await session.scalar(select(col(Tag.id)).where(col(Tag.name) == name))
        if tag_id is None:
            return None
        conds.append(
            col(Task.id).in_(select(col(TaskTag.task_id)).where(col(TaskTag.tag_id) == tag_id))
        )
    return conds


def _next(conds: list[ColumnElement[bool]]) -> Select[int | None]:
    return (
        select(col(Task.id))
        .where(*conds)
        .order_by(col(Task.priority).desc(), col(Task.id))
        .limit(1)
        .with_for_update(skip_locked=True)
    )


async def claim(
    session: AsyncSession, actor: Actor, data: ClaimRequest, ttl_seconds: int
) -> Task | None:
    if not actor.can("task_update_status", "task_update_status_all", "task_update_all"):
        raise Forbidden("Claiming a task needs the task_update_status permission")
    conds = await _conditions(session, actor, data)
    if conds is None:
        return None
    now = utcnow()
    values = {
        "status": TaskStatus.locked.value,
        "lock_holder_id": actor.id,
        "lock_expires_at": lease_until(ttl_seconds),
        "lock_version": col(Task.lock_version) + 1,
        "event_sequence": col(Task.event_sequence) + 1,
        "update_time": now,
    }
    backend = session.get_bind().dialect.name
    if backend in ("postgresql", "sqlite"):
        task = await session.scalar(
            update(Task)
            .where(col(Task.id) == _next(conds).scalar_subquery())
            .values(**values)
            .returning(Task)
            .execution_options(populate_existing=True)
        )
    else:
        task_id = await session.scalar(_next(conds))
        if task_id is None:
            return None
        await session.execute(
            update(Task)
            .where(col(Task.id) == task_id, col(Task.status) == TaskStatus.queued.value)
            .values(**values)
            .execution_options(synchronize_session=False)
        )
        task = await session.get(Task, task_id, populate_existing=True)
    if task is None:
        return None
    await emit(
        session,
        task,
        "task.locked",
        actor=actor.username,
        sequence=task.event_sequence,
        previous_status=TaskStatus.queued.value,
    )
    return task
