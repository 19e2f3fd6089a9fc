"""Resolve object references from requests: an id, a name/label, or a path ending in one."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, TypeVar

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute
from sqlmodel import col

from api.errors import NotFound
from api.refs import MAX_ID, parse_ref
from shared.models import Group, TaskTemplate, User

M = TypeVar("M")


async def lookup(
    session: AsyncSession,
    model: type[M],
    name_column: InstrumentedAttribute[Any],
    ref: str | int,
    what: str,
) -> M:
    key = parse_ref(ref)
    if isinstance(key, int):
        row = await session.get(model, key) if 0 < key <= MAX_ID else None
    else:
        row = await session.scalar(select(model).where(name_column == key))
    if row is None:
        raise NotFound(f"{what} '{ref}' not found")
    return row


async def lookup_many(
    session: AsyncSession,
    model: type[M],
    name_column: InstrumentedAttribute[Any],
    refs: Iterable[str | int],
    what: str,
) -> list[M]:
    """All of `refs`, in order and without duplicates; 404 naming the first unknown one."""
    found: list[M] = []
    seen: set[int] = set()
    for ref in refs:
        row = await lookup(session, model, name_column, ref, what)
        row_id: int = row.id  # type: ignore[attr-defined]
        if row_id not in seen:
            seen.add(row_id)
            found.append(row)
    return found


async def user(session: AsyncSession, ref: str | int) -> User:
    return await lookup(session, User, col(User.username), ref, "User")  # type: ignore[arg-type]


async def users(session: AsyncSession, refs: Sequence[str | int]) -> list[User]:
    return await lookup_many(session, User, col(User.username), refs, "User")  # type: ignore[arg-type]


async def group(session: AsyncSession, ref: str | int) -> Group:
    return await lookup(session, Group, col(Group.groupname), ref, "Group")  # type: ignore[arg-type]


async def groups(session: AsyncSession, refs: Sequence[str | int]) -> list[Group]:
    return await lookup_many(
        session,
        Group,
        col(Group.groupname),  # type: ignore[arg-type]
        refs,
        "Group",
    )


async def template(session: AsyncSession, ref: str | int) -> TaskTemplate:
    return await lookup(
        session,
        TaskTemplate,
        col(TaskTemplate.label),  # type: ignore[arg-type]
        ref,
        "Task template",
    )
