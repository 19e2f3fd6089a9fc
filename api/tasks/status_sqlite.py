"""A status change on SQLite: the whole transaction in one call over the raw connection.

As the claim does (api/tasks/claim_sqlite.py): the credential check, the task read, the
decision (api/tasks/status_pg.py `_decide`, the generic path's rules), the compare-and-set
and the outbox insert run as one function, begun and run by api/tasks/sqlite_tx.py, so
SQLite's write lock is held for the statements alone. Whatever the decision leaves to the
generic path is rolled back and answered there.
"""

from __future__ import annotations

import sqlite3
from functools import lru_cache
from typing import Any

from fastapi import Request
from sqlalchemy import bindparam, select
from sqlmodel import col

from api.auth.credential import Credential, still_holds
from api.auth.service import Actor, AnySelect
from api.tasks import sqlite_tx
from api.tasks.claim import EVENT_COLUMNS, OUTBOX_INSERT, TASK_COLUMNS, task_from_row
from api.tasks.claim_sqlite import task_row
from api.tasks.read import LINKS, links_from, task_read_from
from api.tasks.schemas import TaskRead
from api.tasks.status_pg import COMPARE_AND_SET, changed_task, decide
from api.tasks.visibility import reachable_by
from shared import precompiled
from shared.events.outbox import event_values
from shared.models import RolePermission, Task, User, UserRole
from shared.status import TaskStatus, Transition
from shared.taskevents import SNAPSHOT, snapshot_from, snapshot_params


@lru_cache(maxsize=4)
def _principal(credential_kind: str) -> AnySelect:
    """The caller's name, a row per permission; no row when its credential no longer holds."""
    return (
        select(col(User.username), col(RolePermission.permission))
        .outerjoin(UserRole, col(UserRole.user_id) == col(User.id))
        .outerjoin(RolePermission, col(RolePermission.role_id) == col(UserRole.role_id))
        .where(still_holds(credential_kind))
    )


_TASK = select(*TASK_COLUMNS, reachable_by(bindparam("uid"))).where(
    col(Task.id) == bindparam("task_id")
)


def _transaction(
    conn: sqlite3.Connection,
    credential: Credential,
    task_id: int,
    target: TaskStatus,
    lock_version: int | None,
    ttl_seconds: int,
) -> tuple[Task, dict[str, list[int]]] | None:
    """In a write transaction begun for it: the task after the change and its links, or None."""

    def execute(statement: Any, **params: Any) -> sqlite3.Cursor:
        sql, args = precompiled.arguments(statement, params, "sqlite")
        return conn.execute(sql, args)

    principal = execute(_principal(credential.kind), **credential.params()).fetchall()
    rows = execute(_TASK, task_id=task_id, uid=credential.user_id).fetchall() if principal else []
    if not rows:
        conn.execute("ROLLBACK")
        return None
    actor = Actor(
        id=credential.user_id,
        username=principal[0][0],
        permissions=frozenset(p for _, p in principal if p is not None),
    )
    task = task_from_row(task_row(rows[0][:-1]), precompiled.utc)
    kind = None
    if lock_version is None or lock_version == task.lock_version:
        kind = decide(actor, task, bool(rows[0][-1]), target)
    if kind is None:
        conn.execute("ROLLBACK")
        return None
    if kind != Transition.none:
        after, event_type, _ = changed_task(task, actor, kind, target, ttl_seconds)
        names = execute(SNAPSHOT, **snapshot_params(after)).fetchall()
        snapshot = snapshot_from(after, names, task.status)
        cursor = execute(
            COMPARE_AND_SET,
            task_id=task_id,
            seq=task.event_sequence,
            status=after.status,
            holder=after.lock_holder_id,
            expires=after.lock_expires_at,
            version=after.lock_version,
            now=after.update_time,
        )
        if cursor.rowcount != 1:
            conn.execute("ROLLBACK")
            return None
        event = event_values(
            event_type,
            actor=actor.username,
            snapshot=snapshot,
            task_id=task_id,
            sequence=after.event_sequence,
            callback_content=after.callback_content,
        )
        execute(OUTBOX_INSERT, **{f"v_{name}": event[name] for name in EVENT_COLUMNS})
        task = after
    links = links_from(execute(LINKS, t=task_id).fetchall())
    conn.execute("COMMIT")
    return task, links


async def set_status(
    request: Request,
    credential: Credential,
    task_id: int,
    target: TaskStatus,
    lock_version: int | None,
) -> TaskRead | None:
    """The task after the change, or None when the generic path must handle the request."""
    state = request.app.state
    async with sqlite_tx.connection(state.engine) as aio:
        outcome = await sqlite_tx.write(
            aio,
            _transaction,
            credential,
            task_id,
            target,
            lock_version,
            state.settings.lock_ttl_seconds,
        )
    if outcome is None:
        return None
    task, links = outcome
    return task_read_from(task, links)
