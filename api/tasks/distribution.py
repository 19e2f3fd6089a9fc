"""Weighted push distribution (section 3): each pick goes to the member furthest behind.

Every candidate keeps a count of the tasks pushed to it; the next task goes to the one
with the smallest (count + 1) / weight, ties to the lowest user id. This keeps every
member within about one task of its weighted share at every point, is deterministic, and
needs no scan of the task history. The candidate rows are locked while picking, so
concurrent creators queue up instead of choosing the same member twice.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from api.errors import BadRequest
from shared.models import GroupMember, Role, User, UserRole
from shared.permissions import READER_ROLE


@dataclass
class Candidate:
    user_id: int
    weight: float
    count: int
    added: int = 0

    def cost(self, amount: int = 1) -> float:
        return (self.count + self.added + amount) / self.weight


def choose(
    candidates: list[Candidate], picks: int, *, distinct: bool, amount: int = 1
) -> list[int]:
    """Pure: who gets each of `picks` tasks (each worth `amount` toward the shares)."""
    chosen: list[int] = []
    pool = list(candidates)
    for _ in range(picks):
        if not pool:
            break
        best = min(pool, key=lambda c: (c.cost(amount), c.user_id))
        best.added += amount
        chosen.append(best.user_id)
        if distinct:
            pool.remove(best)
    return chosen


async def _group_candidates(session: AsyncSession, group_id: int) -> list[Candidate]:
    rows = await session.execute(
        select(col(GroupMember.user_id), col(User.assignment_weight), col(GroupMember.pushed_count))
        .join(User, col(User.id) == col(GroupMember.user_id))
        .where(
            col(GroupMember.group_id) == group_id, col(User.active), col(User.assignment_weight) > 0
        )
        .order_by(col(GroupMember.user_id))
        .with_for_update()
    )
    return [Candidate(uid, w, n) for uid, w, n in rows]


async def _reader_candidates(session: AsyncSession) -> list[Candidate]:
    rows = await session.execute(
        select(col(User.id), col(User.assignment_weight), col(User.pushed_count))
        .join(UserRole, col(UserRole.user_id) == col(User.id))
        .join(Role, col(Role.id) == col(UserRole.role_id))
        .where(col(Role.name) == READER_ROLE, col(User.active), col(User.assignment_weight) > 0)
        .order_by(col(User.id))
        .with_for_update()
    )
    return [Candidate(uid, w, n) for uid, w, n in rows if uid is not None]


async def pick_in_group(
    session: AsyncSession,
    group_id: int,
    groupname: str,
    picks: int = 1,
    *,
    distinct: bool = False,
    amount: int = 1,
) -> list[int]:
    candidates = await _group_candidates(session, group_id)
    if not candidates:
        raise BadRequest(f"Group '{groupname}' has no active member with assignment_weight > 0")
    if distinct and picks > len(candidates):
        raise BadRequest(
            f"{picks} tasks need {picks} different members, but group '{groupname}' has "
            f"{len(candidates)} eligible member(s)"
        )
    chosen = choose(candidates, picks, distinct=distinct, amount=amount)
    for c in candidates:
        if c.added:
            await session.execute(
                update(GroupMember)
                .where(col(GroupMember.group_id) == group_id, col(GroupMember.user_id) == c.user_id)
                .values(pushed_count=col(GroupMember.pushed_count) + c.added)
            )
    return chosen


async def pick_readers(session: AsyncSession, picks: int = 1) -> list[int]:
    """Readers (role `user`, active, weight > 0) for tasks with no assignee, by weight."""
    candidates = await _reader_candidates(session)
    if not candidates:
        raise BadRequest(
            "The task names no users, groups or distribute_in_group, and there is no active "
            "user with the 'user' role and assignment_weight > 0 to give it to"
        )
    chosen = choose(candidates, picks, distinct=False)
    for c in candidates:
        if c.added:
            await session.execute(
                update(User)
                .where(col(User.id) == c.user_id)
                .values(pushed_count=col(User.pushed_count) + c.added)
            )
    return chosen
