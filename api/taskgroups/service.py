from __future__ import annotations

from sqlalchemy import ColumnElement, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from api import lookup
from api.auth.service import Actor
from api.content import optional_text
from api.errors import BadRequest, Conflict, NotFound, Unprocessable
from api.taskgroups.schemas import DistributeMethod, TaskGroupCreate, TaskGroupUpdate
from api.tasks import distribution
from api.tasks.service import create_task, resolve_assignees_of
from api.tasks.visibility import reachable_by
from shared.models import Task, TaskGroup
from shared.settings import Settings


async def get(session: AsyncSession, ref: str | int) -> TaskGroup:
    return await lookup.lookup(session, TaskGroup, col(TaskGroup.label), ref, "Task group")  # type: ignore[arg-type]


async def _check_label(session: AsyncSession, label: str) -> None:
    if label.isdigit():
        raise Unprocessable("A task group label cannot be all digits (it would read as an id)")
    if (
        await session.scalar(select(col(TaskGroup.id)).where(col(TaskGroup.label) == label))
        is not None
    ):
        raise Conflict(f"Task group '{label}' already exists")


async def create(
    session: AsyncSession, actor: Actor, settings: Settings, data: TaskGroupCreate
) -> TaskGroup:
    await _check_label(session, data.label)
    assignees: list[tuple[list[int], list[int]]]
    if data.distribute_in_group is not None:
        for i, task in enumerate(data.tasks):
            if task.users or task.groups or task.distribute_in_group is not None:
                raise BadRequest(
                    f"tasks[{i}] names users, groups or distribute_in_group, but the task "
                    "group distributes its tasks itself"
                )
        group = await lookup.group(session, data.distribute_in_group)
        assert group.id is not None
        if data.distribute_method == DistributeMethod.unique:
            picks = await distribution.pick_in_group(
                session, group.id, group.groupname, len(data.tasks), distinct=True
            )
        else:
            (member,) = await distribution.pick_in_group(
                session, group.id, group.groupname, 1, amount=len(data.tasks)
            )
            picks = [member] * len(data.tasks)
        assignees = [([user_id], []) for user_id in picks]
        await distribution.share_lock(session, users=picks)
    else:
        # Every task's picks before any task is written (see resolve_assignees_of).
        assignees = await resolve_assignees_of(session, data.tasks)
    taskgroup = TaskGroup(
        label=data.label,
        callback_url=data.callback_url,
        callback_content=optional_text(data.callback_content),
    )
    session.add(taskgroup)
    await session.flush()
    for i, task in enumerate(data.tasks):
        await create_task(
            session,
            actor,
            settings,
            task,
            taskgroup_id=taskgroup.id,
            users=assignees[i][0],
            groups=assignees[i][1],
        )
    return taskgroup


async def update(session: AsyncSession, taskgroup: TaskGroup, data: TaskGroupUpdate) -> None:
    fields = data.model_fields_set
    if data.label is not None and data.label != taskgroup.label:
        await _check_label(session, data.label)
        taskgroup.label = data.label
    if "callback_url" in fields:
        taskgroup.callback_url = data.callback_url
    if "callback_content" in fields:
        taskgroup.callback_content = optional_text(data.callback_content)
    await session.flush()


async def tasks_of(session: AsyncSession, actor: Actor, taskgroup: TaskGroup) -> list[Task]:
    """The group's tasks the caller may reach (all of them with task_read_all)."""
    query = select(Task).where(col(Task.taskgroup_id) == taskgroup.id).order_by(col(Task.id))
    if not actor.can("task_read_all"):
        query = query.where(reachable_by(actor.id))
    return list(await session.scalars(query))


async def get_visible(session: AsyncSession, actor: Actor, ref: str | int) -> TaskGroup:
    """The task group, if the caller reaches one of its tasks (or has task_read_all)."""
    taskgroup = await get(session, ref)
    if not actor.can("task_read_all"):
        reachable = await session.scalar(
            select(col(Task.id))
            .where(col(Task.taskgroup_id) == taskgroup.id, reachable_by(actor.id))
            .limit(1)
        )
        if reachable is None:
            raise NotFound(f"Task group '{ref}' not found")
    return taskgroup


def visible_filter(actor: Actor) -> list[ColumnElement[bool]]:
    if actor.can("task_read_all"):
        return []
    return [
        col(TaskGroup.id).in_(
            select(col(Task.taskgroup_id)).where(
                col(Task.taskgroup_id).is_not(None), reachable_by(actor.id)
            )
        )
    ]
