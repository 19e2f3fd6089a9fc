"""Claim next on SQLite: the whole transaction in one call over the raw connection.

The claim's credential check, UPDATE ... RETURNING, snapshot, links and outbox insert run
as one function (`_transaction`), begun and run by api/tasks/sqlite_tx.py: on the event
loop's thread when SQLite's write lock is free, on aiosqlite's thread when another process
holds it. Either way the write lock is held for the statements alone, never across a wait
for the event loop.
"""

from __future__ import annotations

import sqlite3
from datetime import datetime
from typing import Any

from fastapi import Request

from api.auth.credential import Credential, presented
from api.auth.service import AnySelect, invalid_login, revoked
from api.deps import actor_of
from api.errors import Forbidden
from api.tasks import sqlite_tx
from api.tasks.claim import (
    NOT_A_CLAIMER,
    OUTBOX_INSERT,
    TASK_COLUMNS,
    Shape,
    claim_returning,
    hot_claim,
    locked_event,
    principal,
    task_from_row,
)
from api.tasks.read import LINKS, links_from, task_read_from
from api.tasks.schemas import ClaimRequest, TaskRead
from shared import precompiled
from shared.models import UTCDateTime
from shared.status import TaskStatus
from shared.taskevents import SNAPSHOT, snapshot_from, snapshot_params

_DATETIME_COLUMNS = frozenset(
    i for i, c in enumerate(TASK_COLUMNS) if isinstance(c.type, UTCDateTime)
)


def task_row(row: tuple[Any, ...]) -> tuple[Any, ...]:
    return tuple(
        datetime.fromisoformat(v) if i in _DATETIME_COLUMNS and v is not None else v
        for i, v in enumerate(row)
    )


Outcome = tuple[str, Any]


def _transaction(
    conn: sqlite3.Connection, credential: Credential, shape: Shape, params: dict[str, Any]
) -> Outcome:
    """In a write transaction begun for it: ("gone" | "forbidden" | "empty" | "claimed", ...)."""

    def fetch(statement: Any, **extra: Any) -> list[Any]:
        sql, args = precompiled.arguments(statement, {**params, **extra}, "sqlite")
        return conn.execute(sql, args).fetchall()

    caller = fetch(principal(credential.kind), **credential.params())
    if not caller:
        conn.execute("ROLLBACK")
        return ("gone", None)
    username, weight, may_claim = caller[0]
    if not may_claim:
        conn.execute("ROLLBACK")
        return ("forbidden", None)
    shape = Shape(
        project=shape.project, application_name=shape.application_name, sees_orphans=weight > 0
    )
    rows = fetch(claim_returning(shape), weight=weight, **credential.params())
    if not rows:
        conn.execute("ROLLBACK")
        return ("empty", None)
    task = task_from_row(task_row(rows[0]), precompiled.utc)
    snapshot = snapshot_from(
        task, fetch(SNAPSHOT, **snapshot_params(task)), TaskStatus.queued.value
    )
    links = links_from(fetch(LINKS, t=task.id))
    fetch(OUTBOX_INSERT, **locked_event(username, task, snapshot))
    conn.execute("COMMIT")
    return ("claimed", (task, links))


async def claim(request: Request, data: ClaimRequest) -> TaskRead | None:
    state = request.app.state
    settings = state.settings
    authorization = request.headers.get("authorization")
    credential = presented(settings, state.secret_key, state.credential_cache, authorization)
    shape, params = hot_claim(data, settings.lock_ttl_seconds)
    async with sqlite_tx.connection(state.engine) as aio:
        outcome: Outcome = ("gone", None)
        for _ in range(2):
            if credential is None:

                async def fetch(statement: AnySelect, **values: Any) -> list[Any]:
                    sql, args = precompiled.arguments(statement, values, "sqlite")
                    return list(await sqlite_tx.on_thread(aio, _fetch_all, aio._conn, sql, args))

                await actor_of(request, fetch)
                credential = presented(
                    settings, state.secret_key, state.credential_cache, authorization
                )
                if credential is None:
                    break
            outcome = await sqlite_tx.write(aio, _transaction, credential, shape, params)
            if outcome[0] != "gone":
                break
            credential = None
    kind, value = outcome
    if kind == "gone":
        bearer = credential is not None and credential.kind == "token"
        raise revoked(settings) if bearer else invalid_login(settings)
    if kind == "forbidden":
        raise Forbidden(NOT_A_CLAIMER)
    if kind == "empty":
        return None
    task, links = value
    return task_read_from(task, links)


def _fetch_all(conn: sqlite3.Connection, sql: str, args: list[Any]) -> list[Any]:
    return conn.execute(sql, args).fetchall()
