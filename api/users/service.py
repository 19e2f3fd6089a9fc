"""Users: lookup (with who may see whom), create, partial update with per-field permissions."""

from __future__ import annotations

from typing import Any

import anyio
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from api import lookup
from api.auth.service import Actor
from api.errors import Conflict, Forbidden, NotFound
from api.guard import ensure_an_administrator_remains
from api.refs import uri
from api.tasks import distribution
from api.users.schemas import UserCreate, UserUpdate
from shared.models import GroupMember, Role, User, UserRole
from shared.permissions import READER_ROLE
from shared.security import hash_password

# Who may change a field of a user. Name, email and password are also the user's own to change.
FIELD_PERMISSIONS: dict[str, tuple[str, ...]] = {
    "username": ("user_update_all",),
    "name": ("user_update_all",),
    "email": ("user_update_all",),
    "password": ("user_update_all",),
    "active": ("user_update_all",),
    "assignment_weight": ("user_update_assignment_weight", "user_update_all"),
}
OWN_FIELDS = frozenset({"name", "email", "password"})
NULLABLE_FIELDS = frozenset({"name", "email"})


async def find_user(session: AsyncSession, username: str) -> User | None:
    return await session.scalar(select(User).where(User.username == username))


def may_see(actor: Actor, user: User) -> bool:
    return user.id == actor.id or actor.can("user_read_all", "user_update_all")


async def get_visible_user(session: AsyncSession, actor: Actor, ref: str | int) -> User:
    """The user `ref` names, if the caller may see it; any other user is 'not found'."""
    # "me" as in GET /users/me, so that PUT /users/me and /users/me/groups work too.
    user = await lookup.user(session, actor.id if ref == "me" else ref)
    if not may_see(actor, user):
        raise NotFound(f"User '{ref}' not found")
    return user


async def list_uris(session: AsyncSession, actor: Actor) -> list[str]:
    if not actor.can("user_read_all"):
        return [uri("users", actor.id)]
    ids = await session.scalars(select(User.id).order_by(col(User.id)))
    return [uri("users", i) for i in ids]


async def group_uris(session: AsyncSession, user: User) -> list[str]:
    ids = await session.scalars(
        select(GroupMember.group_id)
        .where(GroupMember.user_id == user.id)
        .order_by(col(GroupMember.group_id))
    )
    return [uri("groups", i) for i in ids]


async def _check_free(
    session: AsyncSession, username: str | None, email: str | None, own_id: int | None = None
) -> None:
    if username is not None:
        found = await session.scalar(select(User.id).where(User.username == username))
        if found is not None and found != own_id:
            raise Conflict(f"Username '{username}' is already taken")
    if email is not None:
        found = await session.scalar(select(User.id).where(User.email == email))
        if found is not None and found != own_id:
            raise Conflict(f"Email '{email}' is already used by another user")


async def _hash(password: str) -> str:
    return await anyio.to_thread.run_sync(hash_password, password)


async def create(session: AsyncSession, data: UserCreate) -> User:
    await _check_free(session, data.username, data.email)
    user = User(
        username=data.username,
        name=data.name,
        email=data.email,
        password_hash=await _hash(data.password),
        active=data.active,
        assignment_weight=data.assignment_weight,
    )
    session.add(user)
    await session.flush()
    assert user.id is not None
    for name in dict.fromkeys(data.roles):
        role = await session.scalar(select(Role).where(col(Role.name) == name))
        if role is None or role.id is None:
            raise NotFound(f"Role '{name}' not found")
        session.add(UserRole(user_id=user.id, role_id=role.id))
    if READER_ROLE in data.roles:
        await distribution.join_readers(session, user)
    await session.flush()
    return user


def changes_of(user: User, data: UserUpdate) -> dict[str, Any]:
    """The fields `data` would change; a value equal to the current one is no change.

    So a client may send back the user it read with one field edited. A password is always
    a change: it cannot be compared without a slow hash verification.
    """
    changes: dict[str, Any] = {}
    for field in UserUpdate.model_fields:
        if field not in data.model_fields_set:
            continue
        value = getattr(data, field)
        if value is None and field not in NULLABLE_FIELDS:
            continue
        if field != "password" and getattr(user, field) == value:
            continue
        changes[field] = value
    return changes


def check_update_allowed(actor: Actor, user: User, changes: dict[str, Any]) -> None:
    for field in changes:
        if field in OWN_FIELDS and user.id == actor.id:
            continue
        needed = FIELD_PERMISSIONS[field]
        if not actor.can(*needed):
            what = (
                f"your own '{field}'"
                if user.id == actor.id
                else f"'{field}' of user '{user.username}'"
            )
            raise Forbidden(f"Changing {what} needs permission {' or '.join(needed)}", field=field)


async def apply_changes(session: AsyncSession, user: User, changes: dict[str, Any]) -> None:
    """Apply checked changes; a new password or a deactivation ends the user's tokens."""
    await _check_free(session, changes.get("username"), changes.get("email"), user.id)
    if "assignment_weight" in changes or "active" in changes:
        weight = changes.get("assignment_weight", user.assignment_weight)
        await distribution.reweigh(session, user, weight, changes.get("active", user.active))
    for field, value in changes.items():
        if field == "password":
            user.password_hash = await _hash(value)
            user.token_version += 1
        else:
            if field == "active" and user.active and not value:
                user.token_version += 1
            setattr(user, field, value)
    await session.flush()
    if changes.get("active") is False:
        await ensure_an_administrator_remains(session)


async def update(session: AsyncSession, actor: Actor, user: User, data: UserUpdate) -> None:
    changes = changes_of(user, data)
    check_update_allowed(actor, user, changes)
    await apply_changes(session, user, changes)


async def deactivate(session: AsyncSession, user: User) -> None:
    user.active = False
    user.token_version += 1
    await ensure_an_administrator_remains(session)
