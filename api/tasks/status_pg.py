"""A status change (`PUT /tasks/{id}` `{"status": "done"}`) on PostgreSQL in two round trips.

The first statement checks the caller's credential against its user row (as the claim does,
api/auth/credential.py), and reads the caller's permissions, the task, whether the caller
reaches it, and what the event and TaskGet need (template label, tag names, links). The
decision is the generic path's (api/tasks/transitions.py `set_status`), made in Python on
that row. The second statement is the generic path's compare-and-set on `event_sequence`
with the outbox insert in the same statement, so the event is written with the change or
not at all.

Only the common case is handled here: a lock, an unlock, an end state or a reopen, or the
status the task already has, by a caller allowed to make it, on a task with no task group
and no expired lease. Anything else (an error to report, a lost compare-and-set, a
credential the statement does not accept) returns None, and the generic path decides and
answers, with its messages.
"""

from __future__ import annotations

from functools import lru_cache
from types import SimpleNamespace
from typing import Any, cast

from fastapi import Request
from sqlalchemy import (
    Integer,
    Select,
    Text,
    bindparam,
    func,
    insert,
    select,
    update,
)
from sqlmodel import col

from api.auth.credential import Credential, still_holds
from api.auth.service import Actor
from api.tasks.claim import EVENT_COLUMNS, TASK_COLUMNS, task_from_row
from api.tasks.claim_pg import connection
from api.tasks.read import links_of, task_read_from
from api.tasks.schemas import TaskRead
from api.tasks.transitions import LOCK_ALL, STATUS_ALL
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
    utcnow,
)
from shared.status import TaskStatus, Transition, classify
from shared.taskevents import lease_expired, lease_until, snapshot_of

READ_ALL = ("task_read_all",)
_STATUSES = frozenset(s.value for s in TaskStatus)


@lru_cache(maxsize=4)
def read_statement(credential_kind: str) -> Select[Any]:
    """The caller (none when its credential no longer holds) and the task (NULLs if none)."""
    principal = (
        select(
            col(User.username).label("username"),
            func.array_agg(col(RolePermission.permission)).label("permissions"),
        )
        .outerjoin(UserRole, col(UserRole.user_id) == col(User.id))
        .outerjoin(RolePermission, col(RolePermission.role_id) == col(UserRole.role_id))
        .where(still_holds(credential_kind))
        .group_by(col(User.id))
        .cte("principal")
    )
    task_id = col(Task.id)

    def ids(column: Any, *where: Any) -> Any:
        return select(func.array_agg(column)).where(*where).scalar_subquery()

    tag_names = (
        select(col(Tag.name))
        .join(TaskTag, col(TaskTag.tag_id) == col(Tag.id))
        .where(col(TaskTag.task_id) == task_id)
    )
    return select(
        principal.c.username,
        principal.c.permissions,
        *TASK_COLUMNS,
        reachable_by(bindparam("uid")).label("reachable"),
        select(col(TaskTemplate.label))
        .where(col(TaskTemplate.id) == col(Task.template_id))
        .scalar_subquery(),
        func.array(tag_names.scalar_subquery()),
        ids(col(TaskTag.tag_id), col(TaskTag.task_id) == task_id),
        ids(col(TaskUser.user_id), col(TaskUser.task_id) == task_id),
        ids(col(TaskGroupLink.group_id), col(TaskGroupLink.task_id) == task_id),
        select(func.array_agg(func.distinct(col(GroupMember.user_id))))
        .join(TaskGroupLink, col(TaskGroupLink.group_id) == col(GroupMember.group_id))
        .where(col(TaskGroupLink.task_id) == task_id)
        .scalar_subquery(),
    ).select_from(principal.outerjoin(Task, task_id == bindparam("task_id")))


_task_columns = Task.__table__.c  # type: ignore[attr-defined]
# `compare_and_set` for a status change, as one statement (the SQLite path runs it as is).
COMPARE_AND_SET = (
    update(Task)
    .where(col(Task.id) == bindparam("task_id"), col(Task.event_sequence) == bindparam("seq"))
    .values(
        status=bindparam("status", type_=Text),
        lock_holder_id=bindparam("holder", type_=Integer),
        lock_expires_at=bindparam("expires", type_=_task_columns.lock_expires_at.type),
        lock_version=bindparam("version", type_=Integer),
        update_time=bindparam("now", type_=_task_columns.update_time.type),
        event_sequence=col(Task.event_sequence) + 1,
    )
)


def _write_statement() -> Select[Any]:
    """The compare-and-set and the event's outbox row, in one statement: one row when the
    task changed, none when another request changed it first."""
    changed = COMPARE_AND_SET.returning(col(Task.id)).cte("changed")
    columns = OutboxEvent.__table__.c  # type: ignore[attr-defined]
    event = insert(OutboxEvent).from_select(
        list(EVENT_COLUMNS),
        select(*(bindparam(f"v_{n}", type_=columns[n].type) for n in EVENT_COLUMNS)).select_from(
            changed
        ),
    )
    return select(changed.c.id).add_cte(event.cte("event"))


WRITE = _write_statement()


def _actor(credential: Credential, username: str, permissions: list[str | None]) -> Actor:
    return Actor(
        id=credential.user_id,
        username=username,
        permissions=frozenset(p for p in permissions if p is not None),
    )


def simple_status(body: Any, if_match: str | None) -> tuple[TaskStatus, int | None] | None:
    """The status (and lock_version) of a body that sets nothing else, else None."""
    if if_match is not None or not isinstance(body, dict) or "status" not in body:
        return None
    if not set(body) <= {"status", "lock_version"}:
        return None
    status, version = body["status"], body.get("lock_version")
    if not isinstance(status, str) or status not in _STATUSES:
        return None
    if version is not None and (not isinstance(version, int) or isinstance(version, bool)):
        return None
    return TaskStatus(status), version


def decide(actor: Actor, task: Task, reachable: bool, target: TaskStatus) -> Transition | None:
    """The change to make (`Transition.none`: nothing changes), or None when the generic
    path must answer: an error to report, or a change this module does not make."""
    if not actor.can(*READ_ALL) and not (
        actor.can("task_read", "task_update_status") and reachable
    ):
        return None  # 404
    if lease_expired(task):
        return None  # the generic path expires the lease first
    current = TaskStatus(task.status)
    kind = classify(current, target)
    if kind == Transition.none:
        locked_by_other = target == TaskStatus.locked and task.lock_holder_id != actor.id
        return None if locked_by_other else kind
    if task.taskgroup_id is not None:
        return None  # the group's status follows
    allowed = False
    if kind == Transition.lock:
        allowed = actor.can("task_update_status", *STATUS_ALL, LOCK_ALL)
    elif kind == Transition.unlock:
        allowed = task.lock_holder_id == actor.id or actor.can(LOCK_ALL)
    elif kind == Transition.end:
        if current == TaskStatus.locked and task.lock_holder_id != actor.id:
            allowed = actor.can(*STATUS_ALL)
        else:
            allowed = actor.can(*STATUS_ALL) or (actor.can("task_update_status") and reachable)
    elif kind == Transition.reopen:
        allowed = actor.can("task_update_all")
    return kind if allowed else None


def changed_task(
    task: Task, actor: Actor, kind: Transition, target: TaskStatus, ttl_seconds: int
) -> tuple[Task, str, str | None]:
    """The task after the change, the event it emits, and the holder the event names."""
    values: dict[str, Any] = {
        "status": target.value,
        "lock_holder_id": None,
        "lock_expires_at": None,
        "update_time": utcnow(),
        "event_sequence": task.event_sequence + 1,
    }
    event, holder = f"task.status.{target.value}", None
    if kind == Transition.lock:
        values["lock_holder_id"] = actor.id
        values["lock_expires_at"] = lease_until(ttl_seconds)
        values["lock_version"] = task.lock_version + 1
        event, holder = "task.locked", actor.username
    elif kind == Transition.unlock:
        event = "task.unlocked"
    return cast(Task, SimpleNamespace(**{**vars(task), **values})), event, holder


async def set_status(
    request: Request,
    credential: Credential,
    task_id: int,
    target: TaskStatus,
    lock_version: int | None,
) -> TaskRead | None:
    """The task after the change, or None when the generic path must handle the request."""
    async with connection(request.app) as raw:
        rows = await precompiled.fetch(
            raw, read_statement(credential.kind), task_id=task_id, **credential.params()
        )
        if not rows or rows[0][2] is None:
            return None  # a credential to verify again, or no such task: 404
        row = rows[0]
        n = len(TASK_COLUMNS) + 2
        actor = _actor(credential, row[0], row[1])
        task = task_from_row(row[2:n], precompiled.utc)
        reachable, label, tag_names, tag_ids, users, groups, via = row[n:]
        if lock_version is not None and lock_version != task.lock_version:
            return None  # 409, stale lock_version
        kind = decide(actor, task, bool(reachable), target)
        if kind is None:
            return None
        if kind != Transition.none:
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
            written = await precompiled.fetch(
                raw,
                WRITE,
                task_id=task_id,
                seq=task.event_sequence,
                status=after.status,
                holder=after.lock_holder_id,
                expires=after.lock_expires_at,
                version=after.lock_version,
                now=after.update_time,
                **{f"v_{name}": event[name] for name in EVENT_COLUMNS},
            )
            if not written:
                return None  # changed meanwhile: the generic path reads it again
            task = after
    links = links_of(users, groups, via, tag_ids)
    return task_read_from(task, links)
