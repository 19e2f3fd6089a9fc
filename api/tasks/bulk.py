"""Bulk create: up to 10,000 tasks in one all-or-nothing call, set-based.

Tasks whose (project, template, tracking_id) already exists are skipped and reported. Two
requests carrying the same tasks at once cannot both insert them: bulk also writes the
tracking id into `tasks.bulk_key`, unique per project and template, so the second request's
insert fails, and it re-reads what exists and skips it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from sqlalchemy import insert, select, tuple_
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from api import lookup
from api.auth.service import Actor
from api.content import optional_text, to_text
from api.errors import BadRequest, Conflict
from api.refs import uri
from api.tags.service import ensure_tags
from api.tasks import distribution
from api.tasks.schemas import BulkResult, BulkSkipped, TaskCreate
from api.tasks.service import share_hash
from shared.events.outbox import event_values
from shared.models import OutboxEvent, Task, TaskGroupLink, TaskTag, TaskUser, utcnow
from shared.settings import Settings
from shared.status import TaskStatus
from shared.taskevents import snapshot_of

Key = tuple[str, int, str]
CHUNK = 500


class _Refs:
    """Each distinct reference resolved once per request."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session
        self.templates: dict[str | int, tuple[int, str]] = {}
        self.users: dict[str | int, int] = {}
        self.groups: dict[str | int, tuple[int, str]] = {}

    async def template(self, ref: str | int) -> tuple[int, str]:
        if ref not in self.templates:
            found = await lookup.template(self.session, ref)
            assert found.id is not None
            self.templates[ref] = (found.id, found.label)
        return self.templates[ref]

    async def user(self, ref: str | int) -> int:
        if ref not in self.users:
            found = await lookup.user(self.session, ref)
            assert found.id is not None
            self.users[ref] = found.id
        return self.users[ref]

    async def group(self, ref: str | int) -> tuple[int, str]:
        if ref not in self.groups:
            found = await lookup.group(self.session, ref)
            assert found.id is not None
            self.groups[ref] = (found.id, found.groupname)
        return self.groups[ref]


async def _existing(session: AsyncSession, keys: Sequence[Key]) -> dict[Key, int]:
    found: dict[Key, int] = {}
    for start in range(0, len(keys), CHUNK):
        chunk = keys[start : start + CHUNK]
        rows = await session.execute(
            select(
                col(Task.project), col(Task.template_id), col(Task.tracking_id), col(Task.id)
            ).where(
                tuple_(col(Task.project), col(Task.template_id), col(Task.tracking_id)).in_(chunk)
            )
        )
        for project, template_id, tracking_id, task_id in rows:
            if tracking_id is not None and task_id is not None:
                found[(project, template_id, tracking_id)] = task_id
    return found


async def bulk_create(
    session: AsyncSession, actor: Actor, settings: Settings, items: list[TaskCreate]
) -> BulkResult:
    for attempt in range(3):
        try:
            async with session.begin_nested():
                return await _bulk_create(session, actor, settings, items)
        except IntegrityError:
            # Another request inserted some of these tasks meanwhile: look again.
            if attempt == 2:
                break
    raise Conflict("Other requests keep creating the same tasks; retry")


async def _bulk_create(
    session: AsyncSession, actor: Actor, settings: Settings, items: list[TaskCreate]
) -> BulkResult:
    refs = _Refs(session)
    templates = [await refs.template(item.template) for item in items]
    projects = [item.project or settings.project_name for item in items]
    keys: dict[int, Key] = {
        i: (projects[i], templates[i][0], item.tracking_id)
        for i, item in enumerate(items)
        if item.tracking_id is not None
    }
    existing = await _existing(session, sorted(set(keys.values())))
    skipped: list[BulkSkipped] = []
    first_index: dict[Key, int] = {}
    todo: list[int] = []
    for i in range(len(items)):
        key = keys.get(i)
        if key is not None and key in existing:
            skipped.append(
                BulkSkipped(index=i, tracking_id=key[2], task=uri("tasks", existing[key]))
            )
        elif key is not None and key in first_index:
            skipped.append(
                BulkSkipped(index=i, tracking_id=key[2], task=None, duplicate_of=first_index[key])
            )
        else:
            if key is not None:
                first_index[key] = i
            todo.append(i)

    users: dict[int, list[int]] = {}
    groups: dict[int, list[int]] = {}
    by_group: dict[int, list[int]] = defaultdict(list)
    no_assignee: list[int] = []
    for i in todo:
        item = items[i]
        if item.distribute_in_group is not None and (item.users or item.groups):
            raise BadRequest(
                f"tasks[{i}]: distribute_in_group cannot be combined with users/groups"
            )
        users[i] = list(dict.fromkeys([await refs.user(r) for r in item.users]))
        groups[i] = list(dict.fromkeys([(await refs.group(r))[0] for r in item.groups]))
        if item.distribute_in_group is not None:
            by_group[(await refs.group(item.distribute_in_group))[0]].append(i)
        elif not users[i] and not groups[i]:
            no_assignee.append(i)
    names = dict(refs.groups.values())
    for i, user_id in (await distribution.pick_all(session, by_group, names, no_assignee)).items():
        users[i] = [user_id]
    await distribution.share_lock(
        session,
        users=(u for i in todo for u in users[i]),
        groups=(g for i in todo for g in groups[i]),
    )

    now = utcnow()
    rows = [_row(items[i], projects[i], templates[i][0], now) for i in todo]
    ids: list[int] = []
    for start in range(0, len(rows), CHUNK):
        result = await session.execute(
            insert(Task).returning(col(Task.id), sort_by_parameter_order=True),
            rows[start : start + CHUNK],
        )
        ids.extend(i for i in result.scalars().all() if i is not None)
    task_ids = dict(zip(todo, ids, strict=True))

    tags = await ensure_tags(session, {name for i in todo for name in items[i].tags})
    tag_ids = {t.name: t.id for t in tags}
    await _insert(
        session,
        TaskUser,
        [{"task_id": task_ids[i], "user_id": u} for i in todo for u in users[i]],
    )
    await _insert(
        session,
        TaskGroupLink,
        [{"task_id": task_ids[i], "group_id": g} for i in todo for g in groups[i]],
    )
    await _insert(
        session,
        TaskTag,
        [
            {"task_id": task_ids[i], "tag_id": tag_ids[name]}
            for i in todo
            for name in dict.fromkeys(n.strip() for n in items[i].tags)
        ],
    )
    events = []
    for i, row in zip(todo, rows, strict=True):
        task = Task(id=task_ids[i], **row)
        snap = snapshot_of(task, templates[i][1], list(dict.fromkeys(items[i].tags)), None)
        events.append(
            event_values(
                "task.created", actor=actor.username, snapshot=snap, task_id=task.id, sequence=1
            )
        )
    await _insert(session, OutboxEvent, events)
    return BulkResult(
        created=len(todo),
        skipped=len(skipped),
        tasks=[uri("tasks", task_ids[i]) for i in todo],
        skipped_tasks=skipped,
    )


def _row(item: TaskCreate, project: str, template_id: int, now: Any) -> dict[str, Any]:
    return {
        "project": project,
        "template_id": template_id,
        "content": to_text(item.content),
        "status": TaskStatus.queued.value,
        "priority": item.priority,
        "tracking_id": item.tracking_id,
        "bulk_key": item.tracking_id,
        "callback_url": item.callback_url,
        "callback_content": optional_text(item.callback_content),
        "generator_url": item.generator_url,
        "application_name": item.application_name,
        "application_version": item.application_version,
        "lock_version": 0,
        "share_hash": share_hash(),
        "event_sequence": 1,
        "create_time": now,
        "update_time": now,
    }


async def _insert(session: AsyncSession, model: Any, rows: list[dict[str, Any]]) -> None:
    for start in range(0, len(rows), CHUNK * 4):
        chunk = rows[start : start + CHUNK * 4]
        if chunk:
            await session.execute(insert(model), chunk)
