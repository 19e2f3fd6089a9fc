"""Changes that would lock every administrator out are refused."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from api.errors import Conflict
from shared.models import RolePermission, User, UserRole


async def ensure_an_administrator_remains(session: AsyncSession) -> None:
    """After a change to users, roles or permissions: someone active can still manage roles.

    Call after flushing the change, in its transaction; raising rolls the change back.
    """
    await session.flush()
    remaining = await session.scalar(
        select(func.count(func.distinct(col(User.id))))
        .join(UserRole, col(UserRole.user_id) == col(User.id))
        .join(RolePermission, col(RolePermission.role_id) == col(UserRole.role_id))
        .where(col(User.active), col(RolePermission.permission) == "roles_manage")
    )
    if not remaining:
        raise Conflict(
            "This change would leave no active user who can manage roles (roles_manage); "
            "give another user that permission first"
        )
