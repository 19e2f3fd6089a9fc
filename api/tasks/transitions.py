"""Locks (leases) and status changes: the state machine of SPEC section 2.

Every change is a compare-and-set on the task row (see shared.taskevents): two callers can
never both win the same transition, whatever the number of API processes. A caller that
loses re-reads the task and decides again.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from api.auth.service import Actor
from api.errors import Conflict, Forbidden
from api.tasks.groupstatus import refresh_taskgroup_status
from api.tasks.visibility import reachable_by
from shared.models import Task, User
from shared.status import END_STATES, TaskStatus, Transition, classify
from shared.taskevents import compare_and_set, emit, expire_lease, lease_until

LOCK_ALL = "task_update_lock_all"
STATUS_ALL = ("task_update_status_all", "task_update_all")
ATTEMPTS = 8


async def _retrying(
    session: AsyncSession, task: Task, attempt: Callable[[], Awaitable[bool]]
) -> None:
    for _ in range(ATTEMPTS):
        if await attempt():
            return
        await session.refresh(task)
        await expire_lease(session, task)
    raise Conflict("The task keeps changing under this request; retry")


def check_precondition(task: Task, lock_version: int | None) -> None:
    if lock_version is not None and lock_version != task.lock_version:
        raise Conflict(
            f"Stale lock_version {lock_version}: the task's lock is now at version "
            f"{task.lock_version}",
            lock_version=task.lock_version,
        )


async def _holder_name(session: AsyncSession, task: Task) -> str | None:
    if task.lock_holder_id is None:
        return None
    return await session.scalar(
        select(col(User.username)).where(col(User.id) == task.lock_holder_id)
    )


async def _locked_by_other(session: AsyncSession, task: Task) -> Conflict:
    username = await _holder_name(session, task)
    return Conflict(
        f"Task {task.id} is locked by {username}",
        error="Task already locked!",
        lock=f"/api/v1/users/{task.lock_holder_id}",
        username=username,
        lock_expires_at=task.lock_expires_at,
        lock_version=task.lock_version,
    )


async def lock(
    session: AsyncSession,
    actor: Actor,
    task: Task,
    ttl_seconds: int,
    *,
    for_user: int | None = None,
    lock_version: int | None = None,
) -> None:
    """Lock the task for `for_user` (default: the caller), or renew that user's lease."""
    target = for_user if for_user is not None else actor.id
    if target != actor.id and not actor.can(LOCK_ALL):
        raise Forbidden(f"Locking a task for another user needs the {LOCK_ALL} permission")
    if not actor.can("task_update_status", *STATUS_ALL, LOCK_ALL):
        raise Forbidden("Locking a task needs the task_update_status permission")

    async def attempt() -> bool:
        check_precondition(task, lock_version)
        status = TaskStatus(task.status)
        if status in END_STATES:
            raise Conflict(f"Task {task.id} is {status.value}; an ended task cannot be locked")
        if status == TaskStatus.locked:
            if task.lock_holder_id != target:
                raise await _locked_by_other(session, task)
            return await compare_and_set(session, task, 0, lock_expires_at=lease_until(ttl_seconds))
        changed = await compare_and_set(
            session,
            task,
            1,
            status=TaskStatus.locked.value,
            lock_holder_id=target,
            lock_expires_at=lease_until(ttl_seconds),
            lock_version=task.lock_version + 1,
        )
        if changed:
            await emit(
                session,
                task,
                "task.locked",
                actor=actor.username,
                sequence=task.event_sequence,
                previous_status=status.value,
            )
        return changed

    await _retrying(session, task, attempt)


async def unlock(
    session: AsyncSession, actor: Actor, task: Task, *, lock_version: int | None = None
) -> None:
    """Release the lock: its holder, or a caller with task_update_lock_all."""

    async def attempt() -> bool:
        check_precondition(task, lock_version)
        if task.status != TaskStatus.locked.value:
            return True
        if task.lock_holder_id != actor.id and not actor.can(LOCK_ALL):
            raise Forbidden(
                f"Task {task.id} is locked by another user; releasing it needs {LOCK_ALL}"
            )
        changed = await compare_and_set(
            session,
            task,
            1,
            status=TaskStatus.queued.value,
            lock_holder_id=None,
            lock_expires_at=None,
        )
        if changed:
            await emit(
                session,
                task,
                "task.unlocked",
                actor=actor.username,
                sequence=task.event_sequence,
                previous_status=TaskStatus.locked.value,
            )
        return changed

    await _retrying(session, task, attempt)


async def _may_end(session: AsyncSession, actor: Actor, task: Task) -> bool:
    if actor.can(*STATUS_ALL):
        return True
    if not actor.can("task_update_status"):
        return False
    # task_update_status reaches the caller's own (and its groups') tasks only.
    found = await session.scalar(
        select(col(Task.id)).where(col(Task.id) == task.id, reachable_by(actor.id))
    )
    return found is not None


async def set_status(
    session: AsyncSession,
    actor: Actor,
    task: Task,
    target: TaskStatus,
    ttl_seconds: int,
    *,
    lock_version: int | None = None,
) -> None:
    async def attempt() -> bool:
        check_precondition(task, lock_version)
        current = TaskStatus(task.status)
        kind = classify(current, target)
        if kind is None:
            raise Conflict(
                f"Transition {current.value} -> {target.value} is not allowed",
                transition=f"{current.value}->{target.value}",
            )
        if kind == Transition.none:
            if target == TaskStatus.locked and task.lock_holder_id != actor.id:
                raise await _locked_by_other(session, task)
            return True
        if kind == Transition.lock:
            await lock(session, actor, task, ttl_seconds)
            return True
        if kind == Transition.unlock:
            await unlock(session, actor, task)
            return True
        if kind == Transition.end:
            if current == TaskStatus.locked and task.lock_holder_id != actor.id:
                if not actor.can(*STATUS_ALL):
                    raise await _locked_by_other(session, task)
            elif not await _may_end(session, actor, task):
                raise Forbidden(f"Setting status {target.value} needs task_update_status")
        elif not actor.can("task_update_all"):  # reopen
            raise Forbidden(
                f"Reopening a {current.value} task ({current.value} -> {target.value}) needs "
                "the task_update_all permission"
            )
        changed = await compare_and_set(
            session,
            task,
            1,
            status=target.value,
            lock_holder_id=None,
            lock_expires_at=None,
        )
        if changed:
            await emit(
                session,
                task,
                f"task.status.{target.value}",
                actor=actor.username,
                sequence=task.event_sequence,
                previous_status=current.value,
            )
            if task.taskgroup_id is not None:
                await refresh_taskgroup_status(session, task.taskgroup_id, actor.username)
        return changed

    await _retrying(session, task, attempt)
