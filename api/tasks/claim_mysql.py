"""Claim next on MariaDB/MySQL in one round trip.

MariaDB has no UPDATE ... RETURNING and re-parses every statement it is sent, so the claim
is one compound statement (`BEGIN NOT ATOMIC ... END`), prepared once per connection and
run with `EXECUTE ... USING` and the request's values. In one READ COMMITTED transaction
(SKIP LOCKED under REPEATABLE READ deadlocks) it

1. checks the caller's credential on its user row (active, token version or password hash;
   api/auth/credential.py) and reads its name, weight and whether one of its roles may claim;
2. picks the next visible task `FOR UPDATE SKIP LOCKED` and locks it (lease, lock_version,
   event_sequence), with the generic path's statements (api/tasks/claim.py);
3. writes the `task.locked` outbox row, its envelope built by MariaDB as
   shared/events/outbox.py builds it;
4. answers with one JSON value: the caller's name and whether it may claim,
   the task's columns, its links and tag ids (one column: parsing result columns costs
   the client more than the statements cost the server); and commits.

It runs on a small aiomysql pool of the claim's own.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from functools import lru_cache
from typing import Any

import aiomysql
from fastapi import FastAPI, Request
from sqlalchemy import String, bindparam, func, insert, literal, literal_column, select, update
from sqlalchemy.sql import Executable
from sqlmodel import col

from api.auth.credential import Credential, presented
from api.auth.service import AnySelect, invalid_login, revoked
from api.deps import actor_of, verified_credential
from api.errors import APIError, Forbidden
from api.tasks.claim import (
    LOCK_VALUES,
    NOT_A_CLAIMER,
    TASK_COLUMNS,
    Shape,
    hot_claim,
    pick,
    principal,
    task_from_row,
)
from api.tasks.read import links_of, task_read_from
from api.tasks.schemas import ClaimRequest, TaskRead
from shared import precompiled
from shared.models import (
    GroupMember,
    OutboxEvent,
    Task,
    TaskGroupLink,
    TaskTag,
    TaskTemplate,
    TaskUser,
    User,
    UTCDateTime,
)
from shared.status import TaskStatus
from shared.taskevents import API

# Connections of the hot paths' pool, per API process, unless TASKMAN_HOT_POOL_SIZE says
# otherwise. More than on PostgreSQL: a claim here waits on more than CPU (its commit's log
# flush among others), and with 3 connections at 8 clients MariaDB left a fifth of the
# machine idle and the p99 doubled (32-52 ms against 19-21 ms with 15).
POOL_SIZE = 15
WHO, WEIGHT, MAY, TASK = "v_who", "v_weight", "v_may", "v_task"
STATEMENT = "taskmanager_claim"
_numbers = itertools.count(1)

_task: Any = literal_column(TASK)
_who: Any = literal_column(WHO)


def aggregate(column: Any, *where: Any) -> Any:
    return select(func.json_arrayagg(column.distinct())).where(*where).scalar_subquery()


def _envelope() -> Any:
    """The `task.locked` envelope as shared/events/outbox.py writes it (for `Task`'s row
    after the lock; its id and time are parameters)."""
    tags: Any = literal_column(
        "(SELECT json_arrayagg(tags.name ORDER BY CAST(tags.name AS BINARY)) "
        "FROM tags JOIN task_tags ON task_tags.tag_id = tags.id "
        "WHERE task_tags.task_id = tasks.id)"
    )
    snapshot = func.json_object(
        *("id", col(Task.id)),
        *("uri", func.concat(f"{API}/tasks/", col(Task.id))),
        *("project", col(Task.project)),
        "template",
        select(col(TaskTemplate.label))
        .where(col(TaskTemplate.id) == col(Task.template_id))
        .scalar_subquery(),
        *("status", col(Task.status)),
        *("previous_status", TaskStatus.queued.value),
        *("lock_holder", _who),
        *("lock_version", col(Task.lock_version)),
        *("tags", func.coalesce(tags, func.json_array())),
        *("tracking_id", col(Task.tracking_id)),
        *("callback_url", col(Task.callback_url)),
        *("taskgroup_id", col(Task.taskgroup_id)),
    )
    # Compact, as json.dumps(..., separators=(",", ":")) writes it.
    return func.json_compact(
        func.json_object(
            *("id", bindparam("e_id", type_=String)),
            *("type", "task.locked"),
            *("occurred_at", bindparam("e_occurred", type_=String)),
            *("sequence", col(Task.event_sequence)),
            *("actor", _who),
            *("task", snapshot),
        )
    )


EVENT = insert(OutboxEvent).from_select(
    ["event_id", "type", "task_id", "sequence", "payload", "occurred_at"],
    select(
        bindparam("e_id", type_=String),
        literal("task.locked"),
        col(Task.id),
        col(Task.event_sequence),
        _envelope(),
        bindparam("now"),
    ).where(col(Task.id) == _task),
)

# The columns that may be large, sent as columns of their own (a JSON value longer than
# max_allowed_packet would be NULL).
LARGE_COLUMNS = (col(Task.content), col(Task.callback_content))
SMALL_COLUMNS = [c for c in TASK_COLUMNS if c.name not in {"content", "callback_content"}]
LARGE_AT = [i for i, c in enumerate(TASK_COLUMNS) if c.name in {"content", "callback_content"}]

# What the claim answers with: one JSON array (the caller's name and whether it may claim,
# the locked task's other columns, its users, groups, users via its groups and tag ids),
# then the task's content and callback content.
FOUND = select(
    func.json_array(
        _who,
        literal_column(MAY) == 1,
        select(func.json_array(*SMALL_COLUMNS)).where(col(Task.id) == _task).scalar_subquery(),
        aggregate(col(TaskUser.user_id), col(TaskUser.task_id) == _task),
        aggregate(col(TaskGroupLink.group_id), col(TaskGroupLink.task_id) == _task),
        select(func.json_arrayagg(col(GroupMember.user_id).distinct()))
        .join(TaskGroupLink, col(TaskGroupLink.group_id) == col(GroupMember.group_id))
        .where(col(TaskGroupLink.task_id) == _task)
        .scalar_subquery(),
        aggregate(col(TaskTag.tag_id), col(TaskTag.task_id) == _task),
    ),
    *(select(c).where(col(Task.id) == _task).scalar_subquery() for c in LARGE_COLUMNS),
)
DATETIMES_AT = frozenset(i for i, c in enumerate(SMALL_COLUMNS) if isinstance(c.type, UTCDateTime))


def _into(sql: str, variables: str) -> str:
    """A SELECT's SQL storing its one row in `variables` (its select list holds no
    subquery, so the first FROM is its own)."""
    head, sep, rest = sql.partition("\nFROM ")
    assert sep, sql
    return f"{head.rstrip()} INTO {variables}{sep}{rest}"


class Block:
    """A compound statement built from SQLAlchemy statements, with `?` markers for their
    parameters, and the order in which `EXECUTE ... USING` gives them."""

    def __init__(self, prefix: str = STATEMENT) -> None:
        # A name of its own: callers of different kinds on one connection keep theirs.
        self.name = f"{prefix}_{next(_numbers)}"
        self.parts: list[str] = []
        # Each parameter's name and the value the statement was built with, if any:
        # constants of different statements may share a generated name.
        self.slots: list[tuple[str, Any]] = []

    def add(self, statement: Executable, wrap: Any = None) -> Block:
        sql, names, defaults = precompiled.compiled(statement, "mysql")
        self.slots.extend((n, defaults.get(n)) for n in names)
        sql = sql.replace("%s", "?").replace("%%", "%")
        self.parts.append(wrap(sql) if wrap else sql)
        return self

    def text(self, raw: str) -> Block:
        self.parts.append(raw)
        return self

    @property
    def sql(self) -> str:
        body = "".join(f"  {part};\n" for part in self.parts)
        return f"BEGIN NOT ATOMIC\n{body}END"

    @property
    def execute(self) -> str:
        """The EXECUTE statement for pymysql's parameter style."""
        markers = ", ".join(["%s"] * len(self.slots))
        return f"EXECUTE {self.name} USING {markers}" if markers else f"EXECUTE {self.name}"

    def arguments(self, params: dict[str, Any]) -> list[Any]:
        return [precompiled.bind_value(params.get(name, value)) for name, value in self.slots]


@lru_cache(maxsize=64)
def claim_block(shape: Shape, credential_kind: str) -> Block:
    weight: Any = literal_column(WEIGHT)
    picked = pick(shape, weight, weight > 0, literal_column(MAY) == 1)
    lock = update(Task).where(col(Task.id) == _task).values(**LOCK_VALUES)
    return (
        Block()
        .text(f"DECLARE {WHO} TYPE OF {User.__tablename__}.username DEFAULT NULL")
        .text(f"DECLARE {WEIGHT} DOUBLE DEFAULT NULL")
        .text(f"DECLARE {MAY} INT DEFAULT 0")
        .text(f"DECLARE {TASK} INT DEFAULT NULL")
        # SELECT ... INTO finding no row leaves the variables as they are.
        .text("DECLARE CONTINUE HANDLER FOR NOT FOUND BEGIN END")
        .text("START TRANSACTION")
        .add(principal(credential_kind), lambda sql: _into(sql, f"{WHO}, {WEIGHT}, {MAY}"))
        .add(picked, lambda sql: _into(sql, TASK))
        .add(lock)
        .add(EVENT)
        # Last: a statement after COMMIT would open the next transaction (autocommit is
        # off), and the pool closes connections it gets back inside one.
        .add(FOUND)
        .text("COMMIT")
    )


async def pool(app: FastAPI) -> Any:
    existing = getattr(app.state, "mysql_claim_pool", None)
    if existing is not None:
        return existing
    # Connected as the engine connects (host or socket, credentials, charset, TLS), with
    # the isolation level set on each new connection rather than per transaction.
    engine = app.state.engine
    _, connect = engine.dialect.create_connect_args(engine.url)
    connect.setdefault("charset", "utf8mb4")
    created = await aiomysql.create_pool(
        minsize=1,
        maxsize=app.state.settings.hot_pool_size or POOL_SIZE,
        **connect,
        autocommit=False,
        # JSON_ARRAYAGG is capped by group_concat_max_len (1 MiB by default).
        init_command=(
            "SET SESSION tx_isolation = 'READ-COMMITTED', SESSION group_concat_max_len = 67108864"
        ),
        pool_recycle=3600,
    )
    if getattr(app.state, "mysql_claim_pool", None) is None:
        app.state.mysql_claim_pool = created
        return created
    created.close()  # another request made one meanwhile
    await created.wait_closed()
    return app.state.mysql_claim_pool


@asynccontextmanager
async def connection(app: FastAPI) -> AsyncIterator[Any]:
    """A pooled connection. After an unexpected error its state is unknown (a statement
    failed, or the request was cancelled with results unread): it is closed, so it leaves
    the pool, and the server rolls its transaction back."""
    connections = await pool(app)
    # None free within the timeout: TimeoutError, which the hot paths answer with 503.
    async with asyncio.timeout(app.state.settings.hot_pool_timeout_seconds):
        raw = await connections.acquire()
    try:
        yield raw
    except APIError:
        raise  # refused before any statement ran, or after all had
    except BaseException:
        raw.close()
        raise
    finally:
        connections.release(raw)
        if raw.closed:
            # aiomysql wakes no waiting request when a closed connection comes back; one
            # woken here opens a new connection in its place.
            await connections._wakeup()


async def close(app: FastAPI) -> None:
    existing = getattr(app.state, "mysql_claim_pool", None)
    if existing is not None:
        app.state.mysql_claim_pool = None
        existing.close()
        await existing.wait_closed()


async def prepare(cursor: Any, connection: Any, block: Block) -> None:
    """Prepares `block` on `connection`, unless it is already."""
    prepared: set[str] | None = getattr(connection, "taskmanager_prepared", None)
    if prepared is None:
        prepared = connection.taskmanager_prepared = set()
    if block.name not in prepared:
        await cursor.execute(f"PREPARE {block.name} FROM %s", (block.sql,))
        prepared.add(block.name)


async def results(cursor: Any, sql: str, args: list[Any]) -> list[list[Any]]:
    """The result sets of a multi-statement batch (statements without rows give none)."""
    await cursor.execute(sql, args)
    results = []
    while True:
        if cursor.description is not None:
            results.append(list(await cursor.fetchall()))
        if not await cursor.nextset():
            return results


Outcome = tuple[str, Any]


async def _transaction(
    connection: Any, credential: Credential, shape: Shape, params: dict[str, Any]
) -> Outcome:
    """("gone" | "forbidden" | "empty" | "claimed", ...): the block commits what it did."""
    block = claim_block(shape, credential.kind)
    async with connection.cursor() as cursor:
        await prepare(cursor, connection, block)
        values = {**params, **credential.params()}
        (((found, *large),),) = await results(cursor, block.execute, block.arguments(values))
    who, may_claim, row, users, groups, via, tag_ids = json.loads(found)
    if who is None:
        return ("gone", None)
    if not may_claim:
        return ("forbidden", None)
    if row is None:
        return ("empty", None)
    for i in DATETIMES_AT:
        if row[i] is not None:
            row[i] = datetime.fromisoformat(row[i])
    for i, value in zip(LARGE_AT, large, strict=True):
        row.insert(i, value)
    links = links_of(users, groups, via, tag_ids)
    return ("claimed", (task_from_row(row, precompiled.utc), links))


async def claim(request: Request, data: ClaimRequest) -> TaskRead | None:
    state = request.app.state
    settings = state.settings
    authorization = request.headers.get("authorization")
    credential = presented(settings, state.secret_key, state.credential_cache, authorization)
    shape, params = hot_claim(data, settings.lock_ttl_seconds)
    if credential is None:
        credential = await verified_credential(request)
    async with connection(request.app) as raw:
        outcome = await _claim_on(request, raw, credential, shape, params)
    kind, value = outcome
    if kind == "gone":
        bearer = outcome[1] == "token"
        raise revoked(settings) if bearer else invalid_login(settings)
    if kind == "forbidden":
        raise Forbidden(NOT_A_CLAIMER)
    if kind == "empty":
        return None
    task, links = value
    return task_read_from(task, links)


async def _claim_on(
    request: Request,
    connection: Any,
    credential: Credential | None,
    shape: Shape,
    params: dict[str, Any],
) -> Outcome:
    """The claim; ("gone", the credential's kind) when the caller cannot be authenticated."""
    state = request.app.state
    authorization = request.headers.get("authorization")
    for _ in range(2):
        if credential is None:
            # A Basic password not verified yet, or a credential the user row no longer
            # accepts: full authentication verifies it (argon2, then cached) or raises the
            # 401 every other path gives.

            async def fetch(statement: AnySelect, **values: Any) -> list[Any]:
                sql, args = precompiled.arguments(statement, values, "mysql")
                async with connection.cursor() as cursor:
                    await cursor.execute(sql, args)
                    rows = list(await cursor.fetchall())
                await connection.rollback()
                return rows

            await actor_of(request, fetch)
            credential = presented(
                state.settings, state.secret_key, state.credential_cache, authorization
            )
            if credential is None:
                return ("gone", None)
        outcome = await _transaction(connection, credential, shape, params)
        if outcome[0] != "gone":
            return outcome
        kind, credential = credential.kind, None
    return ("gone", kind)
