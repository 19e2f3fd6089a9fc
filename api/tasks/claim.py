"""Claim next: atomically pick the caller's next task and lock it (SPEC section 2).

PostgreSQL runs one statement: `UPDATE ... WHERE id = (SELECT ... FOR UPDATE SKIP LOCKED)
RETURNING`, so concurrent claimers skip each other's rows instead of queueing on them.
SQLite runs the same statement (it drops FOR UPDATE: it has a single writer, and every
transaction starts with BEGIN IMMEDIATE). MariaDB/MySQL have no UPDATE ... RETURNING:
SELECT ... FOR UPDATE SKIP LOCKED, then the UPDATE, in one READ COMMITTED transaction.

The statements are built once per shape of the request (which filters it has) with bound
parameters, so that the hot paths (api/tasks/claim_raw.py) can run the very same statements
on their raw connections.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from types import SimpleNamespace
from typing import Any, cast

from sqlalchemy import (
    ColumnElement,
    Select,
    Update,
    bindparam,
    case,
    func,
    insert,
    literal,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from api import lookup
from api.auth.credential import still_holds
from api.auth.service import Actor
from api.errors import Forbidden
from api.tasks.schemas import ClaimRequest
from api.tasks.visibility import visible_to
from shared.events.outbox import event_values
from shared.models import (
    OutboxEvent,
    RolePermission,
    Tag,
    Task,
    TaskGroupLink,
    TaskTag,
    User,
    UserRole,
    utcnow,
)
from shared.status import TaskStatus
from shared.taskevents import emit, lease_until

CLAIMERS = ("task_update_status", "task_update_status_all", "task_update_all")
NOT_A_CLAIMER = "Claiming a task needs the task_update_status permission"
TASK_COLUMNS = tuple(Task.__table__.columns)  # type: ignore[attr-defined]


@dataclass(frozen=True)
class Shape:
    """Which filters a claim has: one statement per shape."""

    project: bool = False
    application_name: bool = False
    template: bool = False
    group: bool = False
    tags: int = 0
    sees_orphans: bool = True


@lru_cache(maxsize=256)
def next_task(shape: Shape) -> Select[Any]:
    return pick(shape, bindparam("weight"), shape.sees_orphans)


def pick(
    shape: Shape, weight: Any, sees_orphans: bool | ColumnElement[bool], *gate: Any
) -> Select[Any]:
    """The caller's (`uid`) next task, locked, skipping rows other claims hold."""
    conds = [
        *gate,
        col(Task.status) == TaskStatus.queued.value,
        visible_to(bindparam("uid"), weight, sees_orphans=sees_orphans),
    ]
    if shape.project:
        conds.append(col(Task.project) == bindparam("p_project"))
    if shape.application_name:
        conds.append(col(Task.application_name) == bindparam("p_application_name"))
    if shape.template:
        conds.append(col(Task.template_id) == bindparam("p_template_id"))
    if shape.group:
        in_group = select(col(TaskGroupLink.task_id)).where(
            col(TaskGroupLink.group_id) == bindparam("p_group_id")
        )
        conds.append(col(Task.id).in_(in_group))
    for i in range(shape.tags):
        tagged = select(col(TaskTag.task_id)).where(col(TaskTag.tag_id) == bindparam(f"p_tag{i}"))
        conds.append(col(Task.id).in_(tagged))
    return (
        select(col(Task.id))
        .where(*conds)
        .order_by(col(Task.priority).desc(), col(Task.id))
        .limit(1)
        .with_for_update(skip_locked=True)
    )


LOCK_VALUES: dict[str, Any] = {
    "status": TaskStatus.locked.value,
    "lock_holder_id": bindparam("uid"),
    "lock_expires_at": bindparam("expires"),
    "lock_version": col(Task.lock_version) + 1,
    "event_sequence": col(Task.event_sequence) + 1,
    "update_time": bindparam("now"),
}


@lru_cache(maxsize=256)
def claim_returning(shape: Shape) -> Update:
    """Pick and lock in one statement, returning the locked row (PostgreSQL, SQLite)."""
    return (
        update(Task)
        .where(col(Task.id) == next_task(shape).scalar_subquery())
        .values(**LOCK_VALUES)
        .returning(*TASK_COLUMNS)
    )


# MariaDB/MySQL: lock the picked row (selected FOR UPDATE SKIP LOCKED) by id.
LOCK_BY_ID = (
    update(Task)
    .where(col(Task.id) == bindparam("p_task_id"), col(Task.status) == TaskStatus.queued.value)
    .values(**LOCK_VALUES)
)


@lru_cache(maxsize=4)
def principal(credential_kind: str) -> Any:
    """The caller's name, weight and whether one of its roles may claim (1 or 0), when its
    credential (api/auth/credential.py) still holds; no row when it does not."""
    claimer = col(RolePermission.permission).in_([literal(p) for p in CLAIMERS])
    may_claim = func.max(case((claimer, 1), else_=0))
    return (
        select(col(User.username), col(User.assignment_weight), may_claim)
        .outerjoin(UserRole, col(UserRole.user_id) == col(User.id))
        .outerjoin(RolePermission, col(RolePermission.role_id) == col(UserRole.role_id))
        .where(still_holds(credential_kind))
        # All three: MariaDB with ONLY_FULL_GROUP_BY does not see they depend on the key.
        .group_by(col(User.id), col(User.username), col(User.assignment_weight))
    )


@dataclass
class Claim:
    shape: Shape
    params: dict[str, Any]


async def prepare(
    session: AsyncSession | None, actor: Actor, data: ClaimRequest, ttl_seconds: int
) -> Claim | None:
    """The statement shape and parameters of a claim; None when nothing can match.

    References (template, group, tags) need `session` to resolve them.
    """
    if not actor.can(*CLAIMERS):
        raise Forbidden(NOT_A_CLAIMER)
    now = utcnow()
    params: dict[str, Any] = {
        "uid": actor.id,
        "weight": actor.weight,
        "expires": lease_until(ttl_seconds),
        "now": now,
    }
    if data.project is not None:
        params["p_project"] = data.project
    if data.application_name is not None:
        params["p_application_name"] = data.application_name
    if data.template is not None or data.group is not None or data.tags:
        assert session is not None
        if data.template is not None:
            params["p_template_id"] = (await lookup.template(session, data.template)).id
        if data.group is not None:
            params["p_group_id"] = (await lookup.group(session, data.group)).id
        for i, name in enumerate(dict.fromkeys(data.tags)):
            tag_id = await session.scalar(select(col(Tag.id)).where(col(Tag.name) == name))
            if tag_id is None:
                return None
            params[f"p_tag{i}"] = tag_id
    shape = Shape(
        project=data.project is not None,
        application_name=data.application_name is not None,
        template=data.template is not None,
        group=data.group is not None,
        tags=len(dict.fromkeys(data.tags)),
        sees_orphans=actor.weight > 0,
    )
    return Claim(shape, params)


def hot_claim(data: ClaimRequest, ttl_seconds: int) -> tuple[Shape, dict[str, Any]]:
    """The shape and parameters of a claim on a hot path (no reference to resolve), with
    the id and time of its event."""
    shape = Shape(
        project=data.project is not None, application_name=data.application_name is not None
    )
    now = utcnow()
    return shape, {
        "expires": lease_until(ttl_seconds),
        "now": now,
        "e_id": str(uuid.uuid4()),
        "e_occurred": now.isoformat(),
        "p_project": data.project,
        "p_application_name": data.application_name,
    }


def task_from_row(row: Any, tz: Any = None) -> Task:
    """The returned row as a task (a detached, plain record: nothing here is written back)."""
    values = dict(zip((c.name for c in TASK_COLUMNS), row, strict=True))
    if tz is not None:
        for name, value in values.items():
            if isinstance(value, datetime):
                values[name] = tz(value)
    # A plain namespace: building an ORM-instrumented Task costs more than the claim's SQL.
    return cast(Task, SimpleNamespace(**values))


async def claim(
    session: AsyncSession, actor: Actor, data: ClaimRequest, ttl_seconds: int
) -> Task | None:
    prepared = await prepare(session, actor, data, ttl_seconds)
    if prepared is None:
        return None
    backend = session.get_bind().dialect.name
    if backend in ("postgresql", "sqlite"):
        row = (await session.execute(claim_returning(prepared.shape), prepared.params)).first()
        if row is None:
            return None
        task = task_from_row(row)
    else:
        params = prepared.params
        task_id = await session.scalar(next_task(prepared.shape), params)
        if task_id is None:
            return None
        await session.execute(LOCK_BY_ID, {**params, "p_task_id": task_id})
        found = await session.get(Task, task_id, populate_existing=True)
        if found is None:
            return None
        task = found
    await emit(
        session,
        task,
        "task.locked",
        actor=actor.username,
        sequence=task.event_sequence,
        previous_status=TaskStatus.queued.value,
    )
    return task


EVENT_COLUMNS = (
    "event_id",
    "type",
    "task_id",
    "taskgroup_id",
    "sequence",
    "payload",
    "occurred_at",
    "callback_content",
)
OUTBOX_INSERT = insert(OutboxEvent).values({name: bindparam(f"v_{name}") for name in EVENT_COLUMNS})


def locked_event(username: str, task: Task, snapshot: dict[str, Any]) -> dict[str, Any]:
    """The outbox row's parameters for the claim's `task.locked` event."""
    event = event_values(
        "task.locked",
        actor=username,
        snapshot=snapshot,
        task_id=task.id,
        sequence=task.event_sequence,
    )
    return {f"v_{name}": event[name] for name in EVENT_COLUMNS}
