"""First start: the built-in roles and the admin account exist (safe with concurrent starts)."""

from __future__ import annotations

import logging

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlmodel import col

from shared.models import Role, RolePermission, User, UserRole, utcnow
from shared.permissions import BUILTIN_ROLES
from shared.security import hash_password
from shared.settings import Settings

log = logging.getLogger("taskmanager.bootstrap")


async def ensure_roles(session: AsyncSession) -> None:
    """Create missing built-in roles; existing roles keep the permissions given to them."""
    existing = set(await session.scalars(select(col(Role.name))))
    for name, (description, permissions) in BUILTIN_ROLES.items():
        if name in existing:
            continue
        role = Role(name=name, description=description)
        session.add(role)
        await session.flush()
        assert role.id is not None
        session.add_all(RolePermission(role_id=role.id, permission=p) for p in permissions)


async def ensure_admin(session: AsyncSession, settings: Settings) -> None:
    user = await session.scalar(select(User).where(col(User.username) == settings.admin_username))
    if user is None:
        password = settings.resolved_admin_password()
        user = User(
            username=settings.admin_username,
            name="Administrator",
            email=settings.admin_email,
            password_hash=hash_password(password),
            assignment_weight=0.0,
        )
        session.add(user)
        await session.flush()
        if settings.embedded and password == "admin":
            log.warning(
                "Created the account admin with password 'admin' for this local start: "
                "change it, or set TASKMAN_ADMIN_PASSWORD"
            )
        else:
            log.info("Created the admin account %s", settings.admin_username)
    elif settings.admin_force_update:
        user.password_hash = hash_password(settings.resolved_admin_password())
        user.email = settings.admin_email
        user.active = True
        user.token_version += 1
        log.info("Reset the admin account %s from the environment", settings.admin_username)
    admin_role = await session.scalar(select(Role).where(col(Role.name) == "admin"))
    assert admin_role is not None
    assert admin_role.id is not None
    assert user.id is not None
    link = await session.get(UserRole, (user.id, admin_role.id))
    if link is None:
        session.add(UserRole(user_id=user.id, role_id=admin_role.id))
        admin_role.update_datetime = utcnow()


async def bootstrap(sessions: async_sessionmaker[AsyncSession], settings: Settings) -> None:
    """Idempotent; a concurrent start that wins the race makes this one a no-op."""
    for attempt in range(3):
        async with sessions() as session:
            try:
                await ensure_roles(session)
                await ensure_admin(session, settings)
                await session.commit()
                return
            except IntegrityError:
                await session.rollback()
                log.info("bootstrap raced with another process (attempt %d); retrying", attempt)
    raise RuntimeError("bootstrap could not complete")
