"""User groups and their members."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import delete, exists, func
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from api import lookup
from api.auth.service import Actor
from api.errors import Conflict, NotFound
from api.groups.schemas import (
    GroupCreate,
    GroupMemberRead,
    GroupRead,
    GroupUpdate,
    MembershipRead,
    UserRef,
)
from api.refs import uri
from api.tasks import distribution
from api.tasks.visibility import share_counts
from shared.models import Group, GroupMember, TaskGroupLink, User


async def find_group(session: AsyncSession, groupname: str) -> Group | None:
    return await session.scalar(select(Group).where(Group.groupname == groupname))


async def get_visible_group(session: AsyncSession, actor: Actor, ref: str | int) -> Group:
    """The group `ref` names, if the caller is a member or has group_read_all."""
    group = await lookup.group(session, ref)
    if not actor.can("group_read_all"):
        member = await session.get(GroupMember, (group.id, actor.id))
        if member is None:
            raise NotFound(f"Group '{ref}' not found")
    return group


async def list_uris(session: AsyncSession, actor: Actor) -> list[str]:
    query = select(Group.id).order_by(col(Group.id))
    if not actor.can("group_read_all"):
        query = query.join(GroupMember, col(GroupMember.group_id) == Group.id).where(
            GroupMember.user_id == actor.id
        )
    return [uri("groups", i) for i in await session.scalars(query)]


async def member_uris(session: AsyncSession, group: Group) -> list[str]:
    ids = await session.scalars(
        select(GroupMember.user_id)
        .where(GroupMember.group_id == group.id)
        .order_by(col(GroupMember.user_id))
    )
    return [uri("users", i) for i in ids]


async def read_group(session: AsyncSession, group: Group) -> GroupRead:
    assert group.id is not None
    rows = (
        await session.execute(
            select(User.id, User.username, User.assignment_weight, User.active)
            .join(GroupMember, col(GroupMember.user_id) == User.id)
            .where(GroupMember.group_id == group.id)
            .order_by(col(User.id))
        )
    ).all()
    shares = await share_counts(session, group.id, [(w if a else 0.0) for _, _, w, a in rows])
    base = uri("groups", group.id)
    return GroupRead(
        uri=base,
        id=group.id,
        groupname=group.groupname,
        name=group.name,
        create_time=group.create_time,
        tasks=f"{base}/tasks",
        users=f"{base}/users",
        members=[
            GroupMemberRead(
                user=uri("users", i),
                username=name,
                assignment_weight=weight,
                active=active,
                visible_queued_tasks=visible,
            )
            for (i, name, weight, active), visible in zip(rows, shares.visible, strict=True)
        ],
        queued_tasks=shares.queued,
    )


async def _check_groupname_free(
    session: AsyncSession, groupname: str, own_id: int | None = None
) -> None:
    found = await session.scalar(select(Group.id).where(Group.groupname == groupname))
    if found is not None and found != own_id:
        raise Conflict(f"Group '{groupname}' already exists")


async def set_members(session: AsyncSession, group: Group, refs: Sequence[UserRef]) -> None:
    """Make the members exactly `refs`; members who stay keep their distribution counters."""
    assert group.id is not None
    users = {u.id: u for u in await lookup.users(session, refs) if u.id is not None}
    # Every member row locked in user order, as a pick in the group locks them, before the
    # deletes below lock some of them in whatever order they find them.
    current = set(
        await session.scalars(
            select(col(GroupMember.user_id))
            .where(col(GroupMember.group_id) == group.id)
            .order_by(col(GroupMember.user_id))
            .with_for_update()
        )
    )
    gone = current - set(users)
    if gone:
        await session.execute(
            delete(GroupMember).where(
                col(GroupMember.group_id) == group.id,
                col(GroupMember.user_id).in_(gone),
            )
        )
    joining = [u for i, u in users.items() if i not in current]
    starts = await distribution.group_start_counts(session, group.id, joining)
    await distribution.share_lock(session, users=starts)
    session.add_all(
        GroupMember(group_id=group.id, user_id=i, pushed_count=starts[i]) for i in starts
    )
    await session.flush()


async def create(session: AsyncSession, data: GroupCreate) -> Group:
    await _check_groupname_free(session, data.groupname)
    group = Group(groupname=data.groupname, name=data.name)
    session.add(group)
    await session.flush()
    await set_members(session, group, data.members)
    return group


async def update(session: AsyncSession, group: Group, data: GroupUpdate) -> None:
    groupname = data.groupname if data.groupname != group.groupname else None
    if groupname is not None:
        await _check_groupname_free(session, groupname, group.id)
    if data.members is not None:
        # The member rows before the group's own row, as a creation linking a task to the
        # group takes them: it picks among the members, then share-locks the group row.
        await set_members(session, group, data.members)
    if groupname is not None:
        group.groupname = groupname
    if "name" in data.model_fields_set:
        group.name = data.name
    await session.flush()


async def delete_group(session: AsyncSession, group: Group) -> None:
    linked = select(TaskGroupLink.task_id).where(TaskGroupLink.group_id == group.id)
    if await session.scalar(select(exists(linked))):
        count = await session.scalar(select(func.count()).select_from(linked.subquery()))
        raise Conflict(
            f"Group '{group.groupname}' still has {count} task(s) assigned; "
            "reassign or delete them first"
        )
    await session.delete(group)
    await session.flush()


async def set_member(session: AsyncSession, group: Group, user: User, member: bool) -> None:
    """Add or remove one member; idempotent."""
    assert group.id is not None
    assert user.id is not None
    link = await session.get(GroupMember, (group.id, user.id))
    if member and link is None:
        starts = await distribution.group_start_counts(session, group.id, [user])
        session.add(GroupMember(group_id=group.id, user_id=user.id, pushed_count=starts[user.id]))
    elif not member and link is not None:
        await session.delete(link)
    await session.flush()


async def assign_member(
    session: AsyncSession, actor: Actor, group_ref: str, user_ref: str, member: bool
) -> MembershipRead:
    group = await get_visible_group(session, actor, group_ref)
    user = await lookup.user(session, user_ref)
    await set_member(session, group, user, member)
    return MembershipRead(group=uri("groups", group.id), user=uri("users", user.id), member=member)
