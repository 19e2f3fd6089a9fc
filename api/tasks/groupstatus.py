"""A task group's status follows its tasks; its completion is announced exactly once."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from shared.events.outbox import add_event
from shared.models import Task, TaskGroup
from shared.status import taskgroup_status

ANNOUNCED = {"done": "taskgroup.done", "aborted": "taskgroup.aborted"}


async def refresh_taskgroup_status(session: AsyncSession, taskgroup_id: int, actor: str) -> None:
    # Lock the group row first: two last tasks ending at once then take turns, and the
    # second sees the first's committed status, so the completion is never missed.
    group = await session.scalar(
        select(TaskGroup).where(col(TaskGroup.id) == taskgroup_id).with_for_update()
    )
    if group is None:
        return
    statuses = list(
        await session.scalars(select(col(Task.status)).where(col(Task.taskgroup_id) == group.id))
    )
    new = taskgroup_status(statuses)
    if new == group.status:
        return
    group.status = new
    event = ANNOUNCED.get(new)
    if event is not None:
        add_event(
            session,
            event,
            actor=actor,
            snapshot={
                "id": group.id,
                "uri": f"/api/v1/taskgroups/{group.id}",
                "label": group.label,
                "status": new,
                "callback_url": group.callback_url,
                "tasks": len(statuses),
            },
            taskgroup_id=group.id,
            callback_content=group.callback_content,
        )
    await session.flush()
