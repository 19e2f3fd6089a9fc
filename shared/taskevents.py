"""Task snapshots, task events, and lease expiry: shared by the API and the sweepers.

Every change to a task row bumps `tasks.event_sequence` in the same conditional UPDATE that
makes the change, so the counter doubles as the row's version: an UPDATE guarded by the
sequence it read either wins or changes nothing (compare-and-set, never read-check-write).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlmodel import col

from shared.events.outbox import add_event
from shared.models import Tag, Task, TaskTag, TaskTemplate, User, utcnow
from shared.status import TaskStatus

log = logging.getLogger("taskmanager.leases")

API = "/api/v1"


# Built once: aliasing per call would rebuild column proxies on every event.
_HOLDER = User.__table__.alias("holder")  # type: ignore[attr-defined]


def snapshot_of(
    task: Task,
    template_label: str | None,
    tags: list[str],
    holder: str | None,
    previous_status: str | None = None,
) -> dict[str, Any]:
    """The task as an event carries it."""
    return {
        "id": task.id,
        "uri": f"{API}/tasks/{task.id}",
        "project": task.project,
        "template": template_label,
        "status": task.status,
        "previous_status": previous_status,
        "lock_holder": holder,
        "lock_version": task.lock_version,
        "tags": sorted(tags),
        "tracking_id": task.tracking_id,
        "callback_url": task.callback_url,
        "taskgroup_id": task.taskgroup_id,
    }


# The template label, the holder's name and the tag names of one task, in one round trip.
_HOLDER_NAME = (
    select(_HOLDER.c.username).where(_HOLDER.c.id == bindparam("holder_id")).scalar_subquery()
)
SNAPSHOT = (
    select(col(TaskTemplate.label), _HOLDER_NAME, col(Tag.name))
    .select_from(TaskTemplate)
    .outerjoin(TaskTag, col(TaskTag.task_id) == bindparam("task_id"))
    .outerjoin(Tag, col(Tag.id) == col(TaskTag.tag_id))
    .where(col(TaskTemplate.id) == bindparam("template_id"))
)


def snapshot_params(task: Task) -> dict[str, Any]:
    return {"holder_id": task.lock_holder_id, "task_id": task.id, "template_id": task.template_id}


def snapshot_from(
    task: Task, rows: Sequence[Sequence[Any]], previous_status: str | None = None
) -> dict[str, Any]:
    label = rows[0][0] if rows else None
    holder_name = rows[0][1] if rows else None
    tags = [row[2] for row in rows if row[2] is not None]
    return snapshot_of(task, label, tags, holder_name, previous_status)


async def snapshot(
    session: AsyncSession, task: Task, previous_status: str | None = None
) -> dict[str, Any]:
    """The task as an event carries it."""
    rows = (await session.execute(SNAPSHOT, snapshot_params(task))).all()
    return snapshot_from(task, rows, previous_status)


async def emit(
    session: AsyncSession,
    task: Task,
    event_type: str,
    *,
    actor: str | None,
    sequence: int,
    previous_status: str | None = None,
) -> None:
    assert task.id is not None
    add_event(
        session,
        event_type,
        actor=actor,
        snapshot=await snapshot(session, task, previous_status),
        task_id=task.id,
        sequence=sequence,
        callback_content=task.callback_content,
    )


async def compare_and_set(session: AsyncSession, task: Task, bump: int, **values: Any) -> bool:
    """Apply `values` to the task row only if nobody changed it since `task` was read.

    On success the in-memory `task` reflects the new row and its sequence is bumped by
    `bump` (one per event the change emits).
    """
    now = utcnow()
    values.setdefault("update_time", now)
    result = await session.execute(
        update(Task)
        .where(col(Task.id) == task.id, col(Task.event_sequence) == task.event_sequence)
        .values(event_sequence=col(Task.event_sequence) + bump, **values)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        return False
    for key, value in values.items():
        setattr(task, key, value)
    task.event_sequence += bump
    return True


def lease_expired(task: Task, now: datetime | None = None) -> bool:
    return (
        task.status == TaskStatus.locked
        and task.lock_expires_at is not None
        and task.lock_expires_at <= (now or utcnow())
    )


async def expire_lease(session: AsyncSession, task: Task, actor: str | None = None) -> bool:
    """Return an expired lease's task to the queue and emit task.lock_expired."""
    if not lease_expired(task):
        return False
    previous_holder = task.lock_holder_id
    changed = await compare_and_set(
        session,
        task,
        1,
        status=TaskStatus.queued.value,
        lock_holder_id=None,
        lock_expires_at=None,
    )
    if changed:
        # The snapshot names the holder whose lease ran out.
        task.lock_holder_id = previous_holder
        await emit(
            session,
            task,
            "task.lock_expired",
            actor=actor,
            sequence=task.event_sequence,
            previous_status=TaskStatus.locked.value,
        )
        task.lock_holder_id = None
    return changed


def lease_until(ttl_seconds: int) -> datetime:
    return utcnow() + timedelta(seconds=ttl_seconds)


async def sweep_expired_leases(sessions: async_sessionmaker[AsyncSession], batch: int = 500) -> int:
    """Expire every lease past its time, in batches; safe to run in several processes."""
    total = 0
    while True:
        async with sessions() as session:
            tasks = list(
                await session.scalars(
                    select(Task)
                    .where(
                        col(Task.status) == TaskStatus.locked.value,
                        col(Task.lock_expires_at) <= utcnow(),
                    )
                    .order_by(col(Task.lock_expires_at))
                    .limit(batch)
                )
            )
            expired = 0
            for task in tasks:
                if await expire_lease(session, task, actor="system:lease-sweeper"):
                    expired += 1
            await session.commit()
        total += expired
        if len(tasks) < batch:
            break
    if total:
        log.info("returned %d task(s) with an expired lease to the queue", total)
    return total
