"""A status change (`PUT /tasks/{id}` `{"status": "done"}`) on MariaDB in two round trips.

As on PostgreSQL (api/tasks/status_pg.py): one SELECT checks the caller's credential on its
user row and reads its permissions, the task, whether the caller reaches it, and what the
event and TaskGet need, as one JSON value (the large columns beside it); the decision is
made in Python by the same code; then one prepared compound statement makes the generic
path's compare-and-set on `event_sequence` and, only when it changed the task, writes the
outbox row, and commits. Anything else returns None and the generic path answers.
"""

from __future__ import annotations

import json
from datetime import datetime
from functools import lru_cache
from typing import Any

from fastapi import Request
from sqlalchemy import Select, bindparam, func, insert, literal_column, select
from sqlmodel import col

from api.auth.credential import Credential, still_holds
from api.tasks.claim import EVENT_COLUMNS, task_from_row
from api.tasks.claim_mysql import (
    DATETIMES_AT,
    LARGE_AT,
    LARGE_COLUMNS,
    SMALL_COLUMNS,
    Block,
    aggregate,
    connection,
    prepare,
    results,
)
from api.tasks.read import links_of, task_read_from
from api.tasks.schemas import TaskRead
from api.tasks.status_pg import COMPARE_AND_SET, _actor, changed_task, decide
from api.tasks.visibility import reachable_by
from shared import precompiled
from shared.events.outbox import event_values
from shared.models import (
    GroupMember,
    OutboxEvent,
    RolePermission,
    Tag,
    Task,
    TaskGroupLink,
    TaskTag,
    TaskTemplate,
    TaskUser,
    User,
    UserRole,
)
from shared.status import TaskStatus, Transition
from shared.taskevents import snapshot_of

CHANGED = "v_changed"


@lru_cache(maxsize=4)
def read_statement(credential_kind: str) -> Select[Any]:
    """[[name, [permissions]] or null, [task columns..., reachable, label, tag names, tag
    ids, users, groups, via] or null], then the task's content and callback content."""
    principal = (
        select(
            func.json_array(col(User.username), func.json_arrayagg(col(RolePermission.permission)))
        )
        .outerjoin(UserRole, col(UserRole.user_id) == col(User.id))
        .outerjoin(RolePermission, col(RolePermission.role_id) == col(UserRole.role_id))
        .where(still_holds(credential_kind))
        .group_by(col(User.id), col(User.username))
        .scalar_subquery()
    )
    task_id = col(Task.id)
    found = (
        select(
            func.json_array(
                *SMALL_COLUMNS,
                reachable_by(bindparam("uid")),
                select(col(TaskTemplate.label))
                .where(col(TaskTemplate.id) == col(Task.template_id))
                .scalar_subquery(),
                select(func.json_arrayagg(col(Tag.name)))
                .join(TaskTag, col(TaskTag.tag_id) == col(Tag.id))
                .where(col(TaskTag.task_id) == task_id)
                .scalar_subquery(),
                aggregate(col(TaskTag.tag_id), col(TaskTag.task_id) == task_id),
                aggregate(col(TaskUser.user_id), col(TaskUser.task_id) == task_id),
                aggregate(col(TaskGroupLink.group_id), col(TaskGroupLink.task_id) == task_id),
                select(func.json_arrayagg(col(GroupMember.user_id).distinct()))
                .join(TaskGroupLink, col(TaskGroupLink.group_id) == col(GroupMember.group_id))
                .where(col(TaskGroupLink.task_id) == task_id)
                .scalar_subquery(),
            )
        )
        .where(task_id == bindparam("task_id"))
        .scalar_subquery()
    )
    large = (
        select(c).where(col(Task.id) == bindparam("task_id")).scalar_subquery()
        for c in LARGE_COLUMNS
    )
    return select(func.json_array(principal, found), *large)


@lru_cache(maxsize=1)
def write_block() -> Block:
    """The compare-and-set; the outbox row only when it changed the task; 1 or 0."""
    columns = OutboxEvent.__table__.c  # type: ignore[attr-defined]
    event = insert(OutboxEvent).values(
        {n: bindparam(f"v_{n}", type_=columns[n].type) for n in EVENT_COLUMNS}
    )
    return (
        Block("taskmanager_status")
        .text(f"DECLARE {CHANGED} INT DEFAULT 0")
        .text("START TRANSACTION")
        .add(COMPARE_AND_SET)
        # Rows matched (the pool's connections report found rows): 1 when the task still had
        # the sequence read, as every change moves it on.
        .text(f"SET {CHANGED} = ROW_COUNT()")
        .add(event, lambda sql: f"IF {CHANGED} = 1 THEN\n    {sql};\n  END IF")
        .add(select(literal_column(CHANGED)))
        .text("COMMIT")
    )


async def set_status(
    request: Request,
    credential: Credential,
    task_id: int,
    target: TaskStatus,
    lock_version: int | None,
) -> TaskRead | None:
    """The task after the change, or None when the generic path must handle the request."""
    async with connection(request.app) as raw:
        async with raw.cursor() as cursor:
            sql, args = precompiled.arguments(
                read_statement(credential.kind),
                {"task_id": task_id, **credential.params()},
                "mysql",
            )
            await cursor.execute(sql, args)
            ((found, *large),) = await cursor.fetchall()
        answer, wrote = await _change(
            request, raw, credential, task_id, target, lock_version, found, large
        )
        if not wrote:
            # End the read's transaction. (A write's block begins its own, which ends it.)
            await raw.rollback()
    return answer


async def _change(
    request: Request,
    raw: Any,
    credential: Credential,
    task_id: int,
    target: TaskStatus,
    lock_version: int | None,
    found: str,
    large: list[Any],
) -> tuple[TaskRead | None, bool]:
    """The task after the change (None: the generic path answers), and whether the write
    block ran."""
    caller, row = json.loads(found)
    if caller is None or row is None:
        return None, False  # a credential to verify again, or no such task: 404
    n = len(SMALL_COLUMNS)
    for i in DATETIMES_AT:
        if row[i] is not None:
            row[i] = datetime.fromisoformat(row[i])
    columns = row[:n]
    for i, value in zip(LARGE_AT, large, strict=True):
        columns.insert(i, value)
    task = task_from_row(columns, precompiled.utc)
    reachable, label, tag_names, tag_ids, users, groups, via = row[n:]
    actor = _actor(credential, caller[0], caller[1] or [])
    if lock_version is not None and lock_version != task.lock_version:
        return None, False  # 409, stale lock_version
    kind = decide(actor, task, bool(reachable), target)
    if kind is None:
        return None, False
    wrote = kind != Transition.none
    if wrote:
        ttl = request.app.state.settings.lock_ttl_seconds
        after, event_type, holder = changed_task(task, actor, kind, target, ttl)
        event = event_values(
            event_type,
            actor=actor.username,
            snapshot=snapshot_of(after, label, list(tag_names or []), holder, task.status),
            task_id=task_id,
            sequence=after.event_sequence,
            callback_content=after.callback_content,
        )
        block = write_block()
        values = {
            "task_id": task_id,
            "seq": task.event_sequence,
            "status": after.status,
            "holder": after.lock_holder_id,
            "expires": after.lock_expires_at,
            "version": after.lock_version,
            "now": after.update_time,
            **{f"v_{name}": event[name] for name in EVENT_COLUMNS},
        }
        async with raw.cursor() as cursor:
            await prepare(cursor, raw, block)
            (((changed,),),) = await results(cursor, block.execute, block.arguments(values))
        if not int(changed):
            return None, True  # changed meanwhile: the generic path reads it again
        task = after
    links = links_of(users, groups, via, tag_ids)
    return task_read_from(task, links), wrote
