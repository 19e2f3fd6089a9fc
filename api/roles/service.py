"""Roles and their permissions, and which users hold them."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from api import lookup
from api.errors import Conflict, NotFound
from api.guard import ensure_an_administrator_remains
from api.refs import parse_ref, uri
from api.roles.schemas import RoleCreate, RoleRead, RoleUpdate, UserRoleRead
from api.tasks import distribution
from shared.models import Role, RolePermission, User, UserRole, utcnow
from shared.permissions import ALL_PERMISSIONS, BUILTIN_ROLES, READER_ROLE

_ORDER = {name: i for i, name in enumerate(ALL_PERMISSIONS)}


async def find_role(session: AsyncSession, ref: str | int) -> Role | None:
    key = parse_ref(ref)
    if isinstance(key, int):
        return await session.get(Role, key)
    return await session.scalar(select(Role).where(Role.name == key))


async def get_role(session: AsyncSession, ref: str | int) -> Role:
    role = await find_role(session, ref)
    if role is None:
        raise NotFound(f"Role '{ref}' not found")
    return role


async def read_roles(session: AsyncSession, roles: Iterable[Role]) -> list[RoleRead]:
    roles = list(roles)
    permissions: dict[int, list[str]] = defaultdict(list)
    rows = await session.execute(
        select(RolePermission.role_id, RolePermission.permission).where(
            col(RolePermission.role_id).in_([r.id for r in roles])
        )
    )
    for role_id, permission in rows:
        permissions[role_id].append(permission)
    result = []
    for role in roles:
        assert role.id is not None
        result.append(
            RoleRead(
                uri=uri("roles", role.id),
                id=role.id,
                name=role.name,
                description=role.description,
                update_datetime=role.update_datetime,
                permissions=sorted(permissions[role.id], key=lambda p: _ORDER.get(p, len(_ORDER))),
            )
        )
    return result


async def read_role(session: AsyncSession, role: Role) -> RoleRead:
    return (await read_roles(session, [role]))[0]


async def list_roles(session: AsyncSession) -> list[RoleRead]:
    return await read_roles(session, await session.scalars(select(Role).order_by(col(Role.id))))


async def _check_name_free(session: AsyncSession, name: str, own_id: int | None = None) -> None:
    found = await session.scalar(select(Role.id).where(Role.name == name))
    if found is not None and found != own_id:
        raise Conflict(f"Role '{name}' already exists")


async def _set_permissions(session: AsyncSession, role: Role, permissions: list[str]) -> None:
    current = set(
        await session.scalars(
            select(RolePermission.permission).where(RolePermission.role_id == role.id)
        )
    )
    gone = current - set(permissions)
    if gone:
        await session.execute(
            delete(RolePermission).where(
                col(RolePermission.role_id) == role.id,
                col(RolePermission.permission).in_(gone),
            )
        )
    assert role.id is not None
    session.add_all(
        RolePermission(role_id=role.id, permission=p) for p in permissions if p not in current
    )


async def create(session: AsyncSession, data: RoleCreate) -> Role:
    await _check_name_free(session, data.name)
    role = Role(name=data.name, description=data.description)
    session.add(role)
    await session.flush()
    await _set_permissions(session, role, data.permissions)
    await session.flush()
    return role


async def update(session: AsyncSession, role: Role, data: RoleUpdate) -> None:
    if data.name is not None and data.name != role.name:
        if role.name in BUILTIN_ROLES:
            raise Conflict(f"Role '{role.name}' is built in and cannot be renamed")
        await _check_name_free(session, data.name, role.id)
        role.name = data.name
    if "description" in data.model_fields_set:
        role.description = data.description
    if data.permissions is not None:
        await _set_permissions(session, role, data.permissions)
    role.update_datetime = utcnow()
    await ensure_an_administrator_remains(session)


async def delete_role(session: AsyncSession, role: Role) -> None:
    if role.name in BUILTIN_ROLES:
        raise Conflict(f"Role '{role.name}' is built in and cannot be deleted")
    await session.delete(role)
    await session.flush()


async def set_user_role(session: AsyncSession, user: User, role: Role, has_role: bool) -> None:
    """Give or take `role`; idempotent. A change touches the role's update_datetime."""
    assert user.id is not None
    assert role.id is not None
    link = await session.get(UserRole, (user.id, role.id))
    if has_role and link is None:
        if role.name == READER_ROLE:
            await distribution.join_readers(session, user)
        session.add(UserRole(user_id=user.id, role_id=role.id))
    elif not has_role and link is not None:
        await session.delete(link)
    else:
        return
    role.update_datetime = utcnow()
    if not has_role:
        await ensure_an_administrator_remains(session)
    await session.flush()


async def assign_role(
    session: AsyncSession, user_ref: str, role_ref: str, has_role: bool
) -> UserRoleRead:
    user = await lookup.user(session, user_ref)
    role = await get_role(session, role_ref)
    await set_user_role(session, user, role, has_role)
    return UserRoleRead(role=uri("roles", role.id), user=uri("users", user.id), has_role=has_role)


async def set_user_roles(session: AsyncSession, user: User, roles: Iterable[Role]) -> None:
    """Make `roles` exactly the roles `user` holds."""
    wanted = {r.id: r for r in roles}
    current = set(
        await session.scalars(select(UserRole.role_id).where(UserRole.user_id == user.id))
    )
    for role_id, role in wanted.items():
        if role_id not in current:
            await set_user_role(session, user, role, True)
    for role_id in current - set(wanted):
        gone = await session.get(Role, role_id)
        if gone is not None:
            await set_user_role(session, user, gone, False)
