"""Weighted push distribution (section 3): each pick goes to the member furthest behind.

Every candidate keeps a count of the tasks pushed to it; the next task goes to the one
with the smallest (count + 1) / weight, ties to the lowest user id. This keeps every
member within about one task of its weighted share at every point, is deterministic, and
needs no scan of the task history. The candidate rows are locked while picking, so
concurrent creators queue up instead of choosing the same member twice.

A count is a position in the rotation, not a tally to settle: a member who joins a group (or
the readers), comes back from inactivity or weight 0, starts at the position the group has
reached (`start_count`), so it takes its share from then on instead of every task until its
count caught up; a member whose weight changes keeps its position (its count is rescaled).
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from api.errors import BadRequest
from shared.models import Group, GroupMember, Role, User, UserRole
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
    # Only the group's member rows are locked, in user order; the users' rows are read
    # without a lock. A lock through the join would take the user rows too (MariaDB has no
    # FOR UPDATE OF), and a creation picking in a group and then among the readers (which
    # locks user rows) could deadlock with one picking among the readers alone.
    locked = await session.execute(
        select(col(GroupMember.user_id), col(GroupMember.pushed_count))
        .where(col(GroupMember.group_id) == group_id)
        .order_by(col(GroupMember.user_id))
        .with_for_update()
    )
    counts: dict[int, int] = dict(locked.all())
    if not counts:
        return []
    # Read after the lock: a weight change commits its rescaled counts (reweigh) before
    # this lock is had, and this read sees the weight it committed with them.
    rows = await session.execute(
        select(col(User.id), col(User.assignment_weight))
        .join(GroupMember, col(GroupMember.user_id) == col(User.id))
        .where(
            col(GroupMember.group_id) == group_id, col(User.active), col(User.assignment_weight) > 0
        )
        .order_by(col(User.id))
    )
    return [Candidate(uid, w, counts[uid]) for uid, w in rows if uid in counts]


async def _reader_candidates(session: AsyncSession, *, lock: bool = True) -> list[Candidate]:
    statement = (
        select(col(User.id), col(User.assignment_weight), col(User.pushed_count))
        .join(UserRole, col(UserRole.user_id) == col(User.id))
        .join(Role, col(Role.id) == col(UserRole.role_id))
        .where(col(Role.name) == READER_ROLE, col(User.active), col(User.assignment_weight) > 0)
        .order_by(col(User.id))
    )
    rows = await session.execute(statement.with_for_update() if lock else statement)
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


async def pick_all(
    session: AsyncSession,
    in_groups: Mapping[int, Sequence[int]],
    names: Mapping[int, str],
    no_assignee: Sequence[int],
) -> dict[int, int]:
    """The member picked for each item: `in_groups` maps a group id to the indexes of the
    items distributed in it, `no_assignee` lists the items for the readers. Groups are
    picked in group id order, then the readers, as every transaction that picks locks them.
    """
    chosen: dict[int, int] = {}
    for group_id, indexes in sorted(in_groups.items()):
        picked = await pick_in_group(session, group_id, names[group_id], len(indexes))
        chosen.update(zip(indexes, picked, strict=True))
    if no_assignee:
        picked = await pick_readers(session, len(no_assignee))
        chosen.update(zip(no_assignee, picked, strict=True))
    return chosen


async def share_lock(
    session: AsyncSession, users: Iterable[int] = (), groups: Iterable[int] = ()
) -> None:
    """Share-lock the user and group rows that rows about to be written will point to.

    Each written task_users, task_group_links or group_members row takes this lock itself
    (its foreign key), in the order the rows are written. Taken here first, in id order,
    after the picks, it comes in the order every pick takes user rows, so a creation
    naming users cannot deadlock with a pick among the readers.
    """
    for model, ids in ((User, users), (Group, groups)):
        wanted = sorted(set(ids))
        if wanted:
            await session.execute(
                select(col(model.id))
                .where(col(model.id).in_(wanted))
                .order_by(col(model.id))
                .with_for_update(read=True, key_share=True)
            )


def start_count(weight: float, others: Iterable[tuple[float, int]]) -> int:
    """The count a member with `weight` (re)joining a rotation starts with: the position the
    furthest of `others` (weight, count) has reached, in tasks at its own weight, rounded
    down. So it is at most about one task ahead of anyone, and owes nobody a backlog."""
    reached = max((count / w for w, count in others if w > 0), default=0.0)
    return math.floor(weight * reached)


def _eligible(user: User) -> bool:
    return user.active and user.assignment_weight > 0


def _positions(candidates: list[Candidate], leave_out: Collection[int]) -> list[tuple[float, int]]:
    """(weight, count) of the candidates but `leave_out`."""
    return [(c.weight, c.count) for c in candidates if c.user_id not in leave_out]


async def group_start_counts(
    session: AsyncSession, group_id: int, joining: Iterable[User]
) -> dict[int, int]:
    """The starting count of each user joining the group (0 for one not eligible now: it
    gets its place when it becomes eligible, see `reweigh`)."""
    users = {u.id: u for u in joining if u.id is not None}
    # The others' rows are locked as a pick locks them, so no pick changes them meanwhile.
    others = (
        _positions(await _group_candidates(session, group_id), users)
        if any(_eligible(u) for u in users.values())
        else []
    )
    return {
        i: start_count(u.assignment_weight, others) if _eligible(u) else 0 for i, u in users.items()
    }


async def _is_reader(session: AsyncSession, user_id: int) -> bool:
    found = await session.scalar(
        select(col(UserRole.user_id))
        .join(Role, col(Role.id) == col(UserRole.role_id))
        .where(col(UserRole.user_id) == user_id, col(Role.name) == READER_ROLE)
    )
    return found is not None


async def join_readers(session: AsyncSession, user: User) -> None:
    """Call when `user` has just become a reader (role `user`): it starts at the readers'
    position instead of taking every unassigned task until its count caught up."""
    assert user.id is not None
    if _eligible(user):
        others = _positions(await _reader_candidates(session), [user.id])
        user.pushed_count = start_count(user.assignment_weight, others)


async def reweigh(session: AsyncSession, user: User, weight: float, active: bool) -> None:
    """Call before `user` gets `weight` and `active` (the session does not autoflush): it
    keeps its position in every rotation at a new weight, and starts at the position reached
    when it becomes eligible again.

    A new weight rescales the counts in SQL, so picks committed meanwhile are kept. The
    group rows are written in group order and before the user row, as picks lock them (bulk
    creation picks its groups in id order too). The readers' position for a returning reader
    is read without locks: locking every reader while holding group rows could wait on a
    pick that waits on us; a creation running at that moment can leave it a few tasks behind.
    """
    assert user.id is not None
    was, now = _eligible(user), active and weight > 0
    if not now or (was and weight == user.assignment_weight):
        return
    if was:
        factor = weight / user.assignment_weight
        # Locked in group order first: one UPDATE takes the rows in whatever order it finds
        # them.
        await session.execute(
            select(col(GroupMember.group_id))
            .where(col(GroupMember.user_id) == user.id)
            .order_by(col(GroupMember.group_id))
            .with_for_update()
        )
        await session.execute(
            update(GroupMember)
            .where(col(GroupMember.user_id) == user.id)
            .values(pushed_count=func.round(col(GroupMember.pushed_count) * factor))
        )
        await session.execute(
            update(User)
            .where(col(User.id) == user.id)
            .values(pushed_count=func.round(col(User.pushed_count) * factor))
            .execution_options(synchronize_session=False)
        )
        return
    groups = await session.scalars(
        select(col(GroupMember.group_id))
        .where(col(GroupMember.user_id) == user.id)
        .order_by(col(GroupMember.group_id))
    )
    for group_id in list(groups):
        others = _positions(await _group_candidates(session, group_id), [user.id])
        start = start_count(weight, others)
        await session.execute(
            update(GroupMember)
            .where(col(GroupMember.group_id) == group_id, col(GroupMember.user_id) == user.id)
            .values(pushed_count=start)
        )
    if await _is_reader(session, user.id):
        others = _positions(await _reader_candidates(session, lock=False), [user.id])
        user.pushed_count = start_count(weight, others)
