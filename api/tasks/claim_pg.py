"""Claim next on PostgreSQL in one statement, one round trip.

The statement checks the caller's credential against its user row (active, token version or
password hash; api/auth/credential.py) and reads its weight and whether one of its roles may
claim; picks the next visible task with `FOR UPDATE SKIP LOCKED` and locks it (lease,
lock_version, event_sequence); writes the `task.locked` outbox row, its payload built by
PostgreSQL; and returns the task with what TaskGet needs. One statement is one transaction,
so the event is written with the lock or not at all. It returns one row when the credential
holds (with the task, or NULLs when nothing is left) and none when it does not.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import lru_cache
from typing import Any

import asyncpg
from fastapi import FastAPI, Request
from sqlalchemy import (
    Select,
    String,
    Text,
    bindparam,
    cast,
    false,
    func,
    insert,
    literal,
    select,
    true,
    update,
)
from sqlmodel import col

from api.auth.credential import presented, still_holds
from api.auth.service import AnySelect, invalid_login, revoked
from api.deps import actor_of, verified_credential
from api.errors import Forbidden
from api.tasks.claim import (
    CLAIMERS,
    LOCK_VALUES,
    NOT_A_CLAIMER,
    TASK_COLUMNS,
    Shape,
    hot_claim,
    pick,
    task_from_row,
)
from api.tasks.read import links_of, task_read_from
from api.tasks.schemas import ClaimRequest, TaskRead
from shared import precompiled
from shared.db import POSTGRES_SESSION
from shared.events.notify import postgres_dsn
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
from shared.status import TaskStatus
from shared.taskevents import API

# Connections of the hot paths' pool, per API process, unless TASKMAN_HOT_POOL_SIZE says
# otherwise. Few on purpose: every claimer reaches for the head of the same queue, and more
# claims in PostgreSQL at once than it has cores to run them only skip each other's locked
# rows and wait on each other's buffer locks. With 8 clients, 8 connections cost a fifth to
# a third more database CPU per claim than 3 (README, "The hot paths").
POOL_SIZE = 3

# The columns after the task's in each returned row.
LINK_COLUMNS = ("tag_ids", "users", "groups", "via")


@lru_cache(maxsize=256)
def claim_statement(shape: Shape, credential_kind: str) -> Select[Any]:
    principal = (
        select(
            col(User.username).label("username"),
            col(User.assignment_weight).label("weight"),
            func.coalesce(
                func.bool_or(col(RolePermission.permission).in_([literal(p) for p in CLAIMERS])),
                false(),
            ).label("may_claim"),
        )
        .outerjoin(UserRole, col(UserRole.user_id) == col(User.id))
        .outerjoin(RolePermission, col(RolePermission.role_id) == col(UserRole.role_id))
        .where(still_holds(credential_kind))
        .group_by(col(User.id))
        .cte("principal")
    )
    weight = select(principal.c.weight).scalar_subquery()
    may_claim = select(principal.c.may_claim).scalar_subquery()
    picked = pick(shape, weight, weight > 0, may_claim)
    claimed = (
        update(Task)
        .where(col(Task.id) == picked.scalar_subquery())
        .values(**LOCK_VALUES)
        .returning(*TASK_COLUMNS)
        .cte("claimed")
    )
    event = insert(OutboxEvent).from_select(
        ["event_id", "type", "task_id", "sequence", "payload", "occurred_at"],
        select(
            bindparam("e_id", type_=String),
            literal("task.locked"),
            claimed.c.id,
            claimed.c.event_sequence,
            _payload(claimed, select(principal.c.username).scalar_subquery()),
            bindparam("now"),
        ),
    )
    task_id = claimed.c.id

    def ids(column: Any, *where: Any) -> Any:
        return select(func.array_agg(column)).where(*where).scalar_subquery()

    return (
        select(
            principal.c.may_claim,
            *(claimed.c[c.name] for c in TASK_COLUMNS),
            ids(col(TaskTag.tag_id), col(TaskTag.task_id) == task_id),
            ids(col(TaskUser.user_id), col(TaskUser.task_id) == task_id),
            ids(col(TaskGroupLink.group_id), col(TaskGroupLink.task_id) == task_id),
            select(func.array_agg(func.distinct(col(GroupMember.user_id))))
            .join(TaskGroupLink, col(TaskGroupLink.group_id) == col(GroupMember.group_id))
            .where(col(TaskGroupLink.task_id) == task_id)
            .scalar_subquery(),
        )
        .select_from(principal.outerjoin(claimed, true()))
        .add_cte(event.cte("event"))
    )


def _payload(claimed: Any, holder: Any) -> Any:
    """The event envelope as shared/events/outbox.py writes it, as compact JSON text.

    `row_to_json` writes no whitespace and keeps the column order, so the text reads as
    Python's `json.dumps(..., separators=(",", ":"))` of the same envelope does.
    """
    tag_names = (
        select(col(Tag.name))
        .join(TaskTag, col(TaskTag.tag_id) == col(Tag.id))
        .where(col(TaskTag.task_id) == claimed.c.id)
        .order_by(col(Tag.name).collate("C"))
    )
    snapshot = select(
        claimed.c.id.label("id"),
        (literal(f"{API}/tasks/") + cast(claimed.c.id, Text)).label("uri"),
        claimed.c.project.label("project"),
        select(col(TaskTemplate.label))
        .where(col(TaskTemplate.id) == claimed.c.template_id)
        .scalar_subquery()
        .label("template"),
        claimed.c.status.label("status"),
        literal(TaskStatus.queued.value).label("previous_status"),
        holder.label("lock_holder"),
        claimed.c.lock_version.label("lock_version"),
        func.array(tag_names.scalar_subquery()).label("tags"),
        claimed.c.tracking_id.label("tracking_id"),
        claimed.c.callback_url.label("callback_url"),
        claimed.c.taskgroup_id.label("taskgroup_id"),
    ).subquery("snapshot")
    envelope = select(
        bindparam("e_id", type_=String).label("id"),
        literal("task.locked").label("type"),
        bindparam("e_occurred", type_=String).label("occurred_at"),
        claimed.c.event_sequence.label("sequence"),
        holder.label("actor"),
        select(func.row_to_json(snapshot.table_valued())).scalar_subquery().label("task"),
    ).subquery("envelope")
    return cast(select(func.row_to_json(envelope.table_valued())).scalar_subquery(), Text)


async def raw_pool(app: FastAPI) -> Any:
    pool = getattr(app.state, "claim_pool", None)
    if pool is None:
        dsn = postgres_dsn(app.state.settings.async_database_url)
        assert dsn is not None  # only PostgreSQL takes this path
        size = app.state.settings.hot_pool_size or POOL_SIZE
        pool = await asyncpg.create_pool(
            dsn, min_size=1, max_size=size, reset=_keep, server_settings=POSTGRES_SESSION
        )
        if getattr(app.state, "claim_pool", None) is None:
            app.state.claim_pool = pool
        else:  # another request made one meanwhile
            await pool.close()
            pool = app.state.claim_pool
    return pool


BROKEN = (
    asyncpg.PostgresConnectionError,
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.InternalClientError,
    OSError,
    asyncio.CancelledError,
)


@asynccontextmanager
async def connection(app: FastAPI) -> AsyncIterator[Any]:
    """A pooled raw connection; one lost or left in a state asyncpg cannot recover from (a
    dropped connection, a cancelled request) is terminated, so the pool opens a new one in
    its place. (After an error the server reported, the pool's reset rolls back as usual.)"""
    pool = await raw_pool(app)
    # None free within the timeout: TimeoutError, which the hot paths answer with 503.
    # (asyncio.timeout rather than acquire's own timeout, which runs each acquire in a task
    # of its own: many requests wait here at once at 64 clients.)
    async with asyncio.timeout(app.state.settings.hot_pool_timeout_seconds):
        raw = await pool.acquire()
    try:
        yield raw
    except BROKEN:
        raw.terminate()
        raise
    finally:
        await pool.release(raw)


async def _keep(connection: Any) -> None:
    """Nothing to reset between claims: they change no session state, and asyncpg rolls
    back a transaction left open. (The default reset costs a round trip per claim.)"""


async def close(app: FastAPI) -> None:
    pool = getattr(app.state, "claim_pool", None)
    if pool is not None:
        app.state.claim_pool = None
        await pool.close()


async def claim(request: Request, data: ClaimRequest) -> TaskRead | None:
    state = request.app.state
    settings = state.settings
    authorization = request.headers.get("authorization")
    credential = presented(settings, state.secret_key, state.credential_cache, authorization)
    shape, params = hot_claim(data, settings.lock_ttl_seconds)
    if credential is None:
        credential = await verified_credential(request)
    rows: list[Any] = []
    async with connection(request.app) as raw:
        for _ in range(2):
            if credential is None:
                # A Basic password not verified yet, or a credential the user row no longer
                # accepts: full authentication verifies it (argon2, then cached) or raises
                # the 401 every other path gives.

                async def fetch(statement: AnySelect, **params: Any) -> list[Any]:
                    return await precompiled.fetch(raw, statement, **params)

                await actor_of(request, fetch)
                credential = presented(
                    settings, state.secret_key, state.credential_cache, authorization
                )
                if credential is None:
                    break
            rows = await precompiled.fetch(
                raw, claim_statement(shape, credential.kind), **params, **credential.params()
            )
            if rows:
                break
            credential = None
    if not rows:
        bearer = credential is not None and credential.kind == "token"
        raise revoked(settings) if bearer else invalid_login(settings)
    row = rows[0]
    if not row[0]:
        raise Forbidden(NOT_A_CLAIMER)
    if row[1] is None:
        return None
    n = len(TASK_COLUMNS) + 1
    task = task_from_row(row[1:n], precompiled.utc)
    tag_ids, users, groups, via = row[n:]
    links = links_of(users, groups, via, tag_ids)
    return task_read_from(task, links)
