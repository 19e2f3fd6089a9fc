"""Which tasks a user may work on, as SQL (section 3, pull weights).

A user reaches a task assigned to it directly, a task it holds the lock of, and a task of
one of its groups. Queued group tasks are shared out by weight: each task has a stable
`share_hash` in [0, 1) and a member with weight w sees those with hash < w, so shares nest;
a task whose hash is at or above the largest weight among the group's active members with
weight > 0 is visible to all of them, so none is orphaned.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, and_, case, exists, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased
from sqlmodel import col

from shared.models import GroupMember, Task, TaskGroupLink, TaskUser, User
from shared.status import TaskStatus

# Built once: aliasing per call would rebuild column proxies on every request.
_member = aliased(GroupMember)
_person = aliased(User)


def group_share_max(group_id: Any) -> ColumnElement[float]:
    """The largest weight among a group's active members with weight > 0."""
    member, person = _member, _person
    return (
        select(func.max(col(person.assignment_weight)))
        .select_from(member)
        .join(person, col(person.id) == col(member.user_id))
        .where(
            col(member.group_id) == group_id,
            col(person.active),
            col(person.assignment_weight) > 0,
        )
        .scalar_subquery()
    )


def visible_to(
    user_id: Any, weight: Any, *, sees_orphans: bool | ColumnElement[bool] | None = None
) -> ColumnElement[bool]:
    """A WHERE clause on `Task`: the tasks `user_id` (with `weight`) may work on.

    `user_id` and `weight` are values or SQL expressions; with expressions, say whether the
    weight is above 0 (`sees_orphans`): as a bool it decides the shape of the clause, as an
    SQL condition the database decides.
    """
    direct = exists().where(col(TaskUser.task_id) == col(Task.id), col(TaskUser.user_id) == user_id)
    shares = [col(Task.status) != TaskStatus.queued.value, col(Task.share_hash) < weight]
    if sees_orphans is None:
        sees_orphans = weight > 0
    # Beyond every member's share: visible to all members with weight > 0.
    beyond = col(Task.share_hash) >= group_share_max(col(TaskGroupLink.group_id))
    if sees_orphans is True:
        shares.append(beyond)
    elif sees_orphans is not False:
        shares.append(and_(sees_orphans, beyond))
    in_share = or_(*shares)
    via_group = exists().where(
        col(TaskGroupLink.task_id) == col(Task.id),
        col(GroupMember.group_id) == col(TaskGroupLink.group_id),
        col(GroupMember.user_id) == user_id,
        in_share,
    )
    return or_(col(Task.lock_holder_id) == user_id, direct, via_group)


def reachable_by(user_id: Any) -> ColumnElement[bool]:
    """A WHERE clause on `Task`: tasks `user_id` may open by id (weights do not hide them)."""
    direct = exists().where(col(TaskUser.task_id) == col(Task.id), col(TaskUser.user_id) == user_id)
    via_group = exists().where(
        col(TaskGroupLink.task_id) == col(Task.id),
        col(GroupMember.group_id) == col(TaskGroupLink.group_id),
        col(GroupMember.user_id) == user_id,
    )
    return or_(col(Task.lock_holder_id) == user_id, direct, via_group)


@dataclass
class ShareCounts:
    queued: int
    visible: list[int]


async def share_counts(session: AsyncSession, group_id: int, weights: list[float]) -> ShareCounts:
    """How many of a group's queued tasks each weight sees (the pull rule, counted in SQL)."""
    in_group = select(col(TaskGroupLink.task_id)).where(col(TaskGroupLink.group_id) == group_id)
    queued = [col(Task.status) == TaskStatus.queued.value, col(Task.id).in_(in_group)]
    top = max((w for w in weights if w > 0), default=0.0)
    columns = [func.count()]
    for weight in weights:
        seen = col(Task.share_hash) < weight
        if weight > 0:
            seen = or_(seen, col(Task.share_hash) >= top)
        columns.append(func.count(case((seen, 1))))
    row = (await session.execute(select(*columns).select_from(Task).where(*queued))).one()
    return ShareCounts(queued=row[0], visible=list(row[1:]))
