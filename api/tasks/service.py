"""Create, find, list, change and delete tasks. Never commits: the request does, once."""

from __future__ import annotations

import secrets
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import ColumnElement, delete, func, insert, select, true
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from api import lookup
from api.auth.service import Actor
from api.content import optional_text, to_text
from api.errors import BadRequest, Conflict, Forbidden, NotFound, Unprocessable
from api.refs import MAX_ID
from api.tags.service import ensure_tags
from api.tasks import distribution
from api.tasks.groupstatus import refresh_taskgroup_status
from api.tasks.schemas import TaskCreate, TaskUpdate
from api.tasks.visibility import reachable_by, visible_to
from shared.models import Tag, Task, TaskGroupLink, TaskTag, TaskUser, utcnow
from shared.settings import Settings
from shared.status import ALLOWED, TaskStatus
from shared.taskevents import compare_and_set, emit, expire_lease

READ_ALL = ("task_read_all",)


def parse_status(value: str) -> TaskStatus:
    try:
        return TaskStatus(value)
    except ValueError:
        raise Unprocessable(
            f"Unknown status '{value}'; allowed: {ALLOWED}", allowed=[s.value for s in TaskStatus]
        ) from None


def share_hash() -> float:
    return secrets.randbits(53) / float(1 << 53)


async def get_task(session: AsyncSession, actor: Actor, task_id: int) -> Task:
    """The task, if the caller may reach it (else 404); an expired lease is ended first."""
    if not 0 < task_id <= MAX_ID:
        raise NotFound(f"Task {task_id} not found")
    query = select(Task).where(col(Task.id) == task_id)
    if not actor.can(*READ_ALL):
        if not actor.can("task_read", "task_update_status"):
            raise NotFound(f"Task {task_id} not found")
        query = query.where(reachable_by(actor.id))
    task = await session.scalar(query)
    if task is None:
        raise NotFound(f"Task {task_id} not found")
    await expire_lease(session, task, actor=actor.username)
    return task


@dataclass
class TaskFilter:
    project: str | None = None
    template: str | None = None
    user: str | None = None
    status: str | None = None
    tags: list[str] = field(default_factory=list)
    application_name: str | None = None
    tracking_id: str | None = None
    scope: str | None = None
    group_id: int | None = None


async def _conditions(
    session: AsyncSession, actor: Actor, f: TaskFilter
) -> list[ColumnElement[bool]] | None:
    """WHERE clauses for a listing; None when it is certainly empty."""
    conds: list[ColumnElement[bool]] = []
    if f.scope == "all":
        if not actor.can(*READ_ALL):
            raise Forbidden("scope=all needs the task_read_all permission")
    elif f.user is not None:
        target = await lookup.user(session, f.user)
        if target.id != actor.id and not actor.can(*READ_ALL):
            if not actor.can("user_read_all"):
                # Other users are invisible to this caller: do not confirm they exist.
                raise NotFound(f"User '{f.user}' not found")
            raise Forbidden("Listing another user's tasks needs the task_read_all permission")
        assert target.id is not None
        conds.append(visible_to(target.id, target.assignment_weight))
    elif f.group_id is None:
        conds.append(visible_to(actor.id, actor.weight))
    if f.group_id is not None:
        conds.append(
            col(Task.id).in_(
                select(col(TaskGroupLink.task_id)).where(col(TaskGroupLink.group_id) == f.group_id)
            )
        )
    if f.scope not in (None, "all", "mine"):
        raise Unprocessable(f"Unknown scope '{f.scope}'; allowed: mine, all")
    if f.project is not None:
        conds.append(col(Task.project) == f.project)
    if f.template is not None:
        conds.append(col(Task.template_id) == (await lookup.template(session, f.template)).id)
    if f.status is not None:
        conds.append(col(Task.status) == parse_status(f.status).value)
    if f.application_name is not None:
        conds.append(col(Task.application_name) == f.application_name)
    if f.tracking_id is not None:
        conds.append(col(Task.tracking_id) == f.tracking_id)
    for name in dict.fromkeys(f.tags):
        tag_id = await session.scalar(select(col(Tag.id)).where(col(Tag.name) == name))
        if tag_id is None:
            return None
        conds.append(
            col(Task.id).in_(select(col(TaskTag.task_id)).where(col(TaskTag.tag_id) == tag_id))
        )
    return conds


async def list_tasks(
    session: AsyncSession, actor: Actor, f: TaskFilter, offset: int, limit: int
) -> tuple[list[Task], int]:
    conds = await _conditions(session, actor, f)
    if conds is None:
        return [], 0
    where = conds or [true()]
    total = await session.scalar(select(func.count()).select_from(Task).where(*where)) or 0
    rows = await session.scalars(
        select(Task).where(*where).order_by(col(Task.id)).offset(offset).limit(limit)
    )
    return list(rows), total


async def _assign(
    session: AsyncSession, task_id: int, user_ids: list[int], group_ids: list[int]
) -> None:
    if user_ids:
        await session.execute(
            insert(TaskUser), [{"task_id": task_id, "user_id": u} for u in user_ids]
        )
    if group_ids:
        await session.execute(
            insert(TaskGroupLink), [{"task_id": task_id, "group_id": g} for g in group_ids]
        )


async def _tag(session: AsyncSession, task_id: int, names: list[str]) -> None:
    tags = await ensure_tags(session, names)
    if tags:
        await session.execute(insert(TaskTag), [{"task_id": task_id, "tag_id": t.id} for t in tags])


async def resolve_assignees(session: AsyncSession, data: TaskCreate) -> tuple[list[int], list[int]]:
    """The users and groups a new task goes to; a pick by weight when none are named."""
    return (await resolve_assignees_of(session, [data]))[0]


async def resolve_assignees_of(
    session: AsyncSession, items: Sequence[TaskCreate]
) -> list[tuple[list[int], list[int]]]:
    """The users and groups each new task goes to, picked by weight where none are named.

    Every pick is made here, before the caller writes anything, and the picks lock as every
    transaction that picks does (distribution.py): member rows group by group in group id
    order, then the readers' user rows. A task written first would hold a share lock on its
    users' rows (the task_users foreign key), taken out of that order: a pick among the
    readers after it could deadlock with another creation's. For the same reason the rows
    of every user and group the tasks will name are share-locked last, in id order.
    """
    resolved: list[tuple[list[int], list[int]]] = []
    by_group: dict[int, list[int]] = defaultdict(list)
    names: dict[int, str] = {}
    no_assignee: list[int] = []
    for i, data in enumerate(items):
        if data.distribute_in_group is not None and (data.users or data.groups):
            raise BadRequest("distribute_in_group cannot be combined with users or groups")
        users = [u.id for u in await lookup.users(session, data.users) if u.id is not None]
        groups = [g.id for g in await lookup.groups(session, data.groups) if g.id is not None]
        if data.distribute_in_group is not None:
            group = await lookup.group(session, data.distribute_in_group)
            assert group.id is not None
            by_group[group.id].append(i)
            names[group.id] = group.groupname
        elif not users and not groups:
            no_assignee.append(i)
        resolved.append((users, groups))
    for i, user_id in (await distribution.pick_all(session, by_group, names, no_assignee)).items():
        resolved[i] = ([user_id], resolved[i][1])
    await distribution.share_lock(
        session,
        users=(u for users, _ in resolved for u in users),
        groups=(g for _, groups in resolved for g in groups),
    )
    return resolved


async def create_task(
    session: AsyncSession,
    actor: Actor,
    settings: Settings,
    data: TaskCreate,
    *,
    taskgroup_id: int | None = None,
    users: list[int] | None = None,
    groups: list[int] | None = None,
) -> Task:
    template = await lookup.template(session, data.template)
    if users is None or groups is None:
        users, groups = await resolve_assignees(session, data)
    now = utcnow()
    task = Task(
        project=data.project or settings.project_name,
        template_id=template.id,  # type: ignore[arg-type]
        content=to_text(data.content),
        status=TaskStatus.queued.value,
        priority=data.priority,
        tracking_id=data.tracking_id,
        callback_url=data.callback_url,
        callback_content=optional_text(data.callback_content),
        generator_url=data.generator_url,
        application_name=data.application_name,
        application_version=data.application_version,
        taskgroup_id=taskgroup_id,
        share_hash=share_hash(),
        event_sequence=1,
        create_time=now,
        update_time=now,
    )
    session.add(task)
    await session.flush()
    assert task.id is not None
    await _assign(session, task.id, users, groups)
    await _tag(session, task.id, data.tags)
    await emit(session, task, "task.created", actor=actor.username, sequence=1)
    return task


FIELD_PERMISSIONS: dict[str, tuple[str, ...]] = {
    "users": ("task_update_user", "task_update_all"),
    "groups": ("task_update_user", "task_update_all"),
}


def check_field_permissions(actor: Actor, data: TaskUpdate) -> None:
    for name in sorted(data.model_fields_set - {"status", "lock_version"}):
        needed = FIELD_PERMISSIONS.get(name, ("task_update_all",))
        if not actor.can(*needed):
            raise Forbidden(
                f"Changing the task field '{name}' needs the {' or '.join(needed)} permission",
                field=name,
            )


async def update_fields(session: AsyncSession, actor: Actor, task: Task, data: TaskUpdate) -> bool:
    """Apply the non-status fields of a PUT; True when something changed."""
    assert task.id is not None
    values: dict[str, Any] = {}
    fields = data.model_fields_set
    simple = (
        "project",
        "callback_url",
        "generator_url",
        "application_name",
        "application_version",
        "tracking_id",
        "priority",
    )
    for name in simple:
        if name in fields:
            value = getattr(data, name)
            if value is None and name in ("project", "priority"):
                raise Unprocessable(f"{name} cannot be null")
            if value != getattr(task, name):
                values[name] = value
    if "template" in fields:
        if data.template is None:
            raise Unprocessable("template cannot be null")
        template = await lookup.template(session, data.template)
        if template.id != task.template_id:
            values["template_id"] = template.id
    if "content" in fields and to_text(data.content) != task.content:
        values["content"] = to_text(data.content)
    if "callback_content" in fields:
        text = optional_text(data.callback_content)
        if text != task.callback_content:
            values["callback_content"] = text
    links_changed = False
    if "users" in fields or "groups" in fields or "tags" in fields:
        links_changed = await _replace_links(session, task.id, data)
    if not values and not links_changed:
        return False
    if not await compare_and_set(session, task, 1, **values):
        raise Conflict("The task was changed by another request; read it again and retry")
    await emit(session, task, "task.updated", actor=actor.username, sequence=task.event_sequence)
    return True


async def _replace_links(session: AsyncSession, task_id: int, data: TaskUpdate) -> bool:
    changed = False
    fields = data.model_fields_set
    if "users" in fields:
        new = {u.id for u in await lookup.users(session, data.users or [])}
        old = set(
            await session.scalars(
                select(col(TaskUser.user_id)).where(col(TaskUser.task_id) == task_id)
            )
        )
        if new != old:
            await session.execute(delete(TaskUser).where(col(TaskUser.task_id) == task_id))
            await _assign(session, task_id, sorted(i for i in new if i is not None), [])
            changed = True
    if "groups" in fields:
        new = {g.id for g in await lookup.groups(session, data.groups or [])}
        old = set(
            await session.scalars(
                select(col(TaskGroupLink.group_id)).where(col(TaskGroupLink.task_id) == task_id)
            )
        )
        if new != old:
            await session.execute(
                delete(TaskGroupLink).where(col(TaskGroupLink.task_id) == task_id)
            )
            await _assign(session, task_id, [], sorted(i for i in new if i is not None))
            changed = True
    if "tags" in fields:
        wanted = await ensure_tags(session, data.tags or [])
        new = {t.id for t in wanted}
        old = set(
            await session.scalars(
                select(col(TaskTag.tag_id)).where(col(TaskTag.task_id) == task_id)
            )
        )
        if new != old:
            await session.execute(delete(TaskTag).where(col(TaskTag.task_id) == task_id))
            await _tag(session, task_id, [t.name for t in wanted])
            changed = True
    return changed


async def delete_task(session: AsyncSession, actor: Actor, task: Task) -> None:
    assert task.id is not None
    task.event_sequence += 1
    await emit(session, task, "task.deleted", actor=actor.username, sequence=task.event_sequence)
    await session.execute(delete(Task).where(col(Task.id) == task.id))
    if task.taskgroup_id is not None:
        # Deleting a group's last unfinished task completes the group.
        await refresh_taskgroup_status(session, task.taskgroup_id, actor.username)
