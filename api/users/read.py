"""The UserRead shape, shared by /users and /users/me."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from api.refs import uri
from api.users.schemas import UserRead
from shared.models import Role, User, UserRole


async def role_names(session: AsyncSession, user_id: int) -> list[str]:
    rows = await session.scalars(
        select(col(Role.name))
        .join(UserRole, col(UserRole.role_id) == col(Role.id))
        .where(col(UserRole.user_id) == user_id)
        .order_by(col(Role.name))
    )
    return list(rows)


async def read_user(session: AsyncSession, user: User) -> UserRead:
    assert user.id is not None
    base = uri("users", user.id)
    return UserRead(
        uri=base,
        id=user.id,
        username=user.username,
        name=user.name,
        email=user.email,
        active=user.active,
        create_time=user.create_time,
        assignment_weight=user.assignment_weight,
        tasks=f"{base}/tasks",
        groups=f"{base}/groups",
        roles=await role_names(session, user.id),
    )
