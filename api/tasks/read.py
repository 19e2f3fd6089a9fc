"""Tasks as the API returns them (the 6.x shapes)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import bindparam, literal, select, union_all
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from api.refs import uri
from api.tasks.schemas import LockRead, TagRef, TaskRead, TaskSummary
from shared.models import GroupMember, Tag, Task, TaskGroupLink, TaskTag, TaskUser, User


async def tags_of(session: AsyncSession, task_ids: Sequence[int]) -> dict[int, list[Tag]]:
    by_task: dict[int, list[Tag]] = defaultdict(list)
    if not task_ids:
        return by_task
    rows = await session.execute(
        select(col(TaskTag.task_id), Tag)
        .join(Tag, col(Tag.id) == col(TaskTag.tag_id))
        .where(col(TaskTag.task_id).in_(task_ids))
        .order_by(col(Tag.name))
    )
    for task_id, tag in rows:
        by_task[task_id].append(tag)
    return by_task


async def summaries(session: AsyncSession, tasks: Sequence[Task]) -> list[TaskSummary]:
    ids = [t.id for t in tasks if t.id is not None]
    tags = await tags_of(session, ids)
    return [
        TaskSummary(
            uri=uri("tasks", t.id),
            id=t.id,
            status=t.status,
            project=t.project,
            template=uri("task_templates", t.template_id),
            tags=[TagRef(uri=uri("tags", tag.id), name=tag.name) for tag in tags.get(t.id, [])],
        )
        for t in tasks
        if t.id is not None
    ]


# A task's users, groups, users via its groups and tags, in one round trip.
LINKS = union_all(
    select(literal("u"), col(TaskUser.user_id)).where(col(TaskUser.task_id) == bindparam("t")),
    select(literal("g"), col(TaskGroupLink.group_id)).where(
        col(TaskGroupLink.task_id) == bindparam("t")
    ),
    select(literal("v"), col(GroupMember.user_id))
    .join(TaskGroupLink, col(TaskGroupLink.group_id) == col(GroupMember.group_id))
    .where(col(TaskGroupLink.task_id) == bindparam("t")),
    select(literal("t"), col(TaskTag.tag_id)).where(col(TaskTag.task_id) == bindparam("t")),
)


def links_from(rows: Iterable[Sequence[Any]]) -> dict[str, list[int]]:
    links: dict[str, set[int]] = {"u": set(), "g": set(), "v": set(), "t": set()}
    for kind, ref in rows:
        links[kind].add(ref)
    return {kind: sorted(refs) for kind, refs in links.items()}


def links_of(
    users: Iterable[int] | None,
    groups: Iterable[int] | None,
    via: Iterable[int] | None,
    tag_ids: Iterable[int] | None,
) -> dict[str, list[int]]:
    """The links as `links_from` gives them, from id lists (NULL when there are none)."""
    return {
        "u": sorted(users or []),
        "g": sorted(groups or []),
        "v": sorted(via or []),
        "t": sorted(tag_ids or []),
    }


async def read_task(session: AsyncSession, task: Task) -> TaskRead:
    assert task.id is not None
    return task_read_from(task, links_from(await session.execute(LINKS, {"t": task.id})))


def task_read_from(task: Task, links: dict[str, list[int]]) -> TaskRead:
    """TaskGet from the task row and its links."""
    assert task.id is not None
    base = uri("tasks", task.id)
    return TaskRead(
        uri=base,
        id=task.id,
        project=task.project,
        template=uri("task_templates", task.template_id),
        content=task.content,
        status=task.status,
        lock=f"{base}/lock",
        tags=[uri("tags", i) for i in links["t"]],
        callback_url=task.callback_url,
        callback_content=task.callback_content,
        generator_url=task.generator_url,
        application_name=task.application_name,
        application_version=task.application_version,
        tracking_id=task.tracking_id,
        priority=task.priority,
        create_time=task.create_time,
        update_time=task.update_time,
        users=[uri("users", i) for i in links["u"]],
        groups=[uri("groups", i) for i in links["g"]],
        users_via_group=[uri("users", i) for i in links["v"]],
        lock_holder=uri("users", task.lock_holder_id) if task.lock_holder_id else None,
        lock_expires_at=task.lock_expires_at,
        lock_version=task.lock_version,
        taskgroup=uri("taskgroups", task.taskgroup_id) if task.taskgroup_id else None,
    )


async def read_lock(session: AsyncSession, task: Task, error: str | None = None) -> LockRead:
    username = None
    if task.lock_holder_id is not None:
        username = await session.scalar(
            select(col(User.username)).where(col(User.id) == task.lock_holder_id)
        )
    return LockRead(
        lock=uri("users", task.lock_holder_id) if task.lock_holder_id else None,
        username=username,
        error=error,
        lock_expires_at=task.lock_expires_at,
        lock_version=task.lock_version,
    )
