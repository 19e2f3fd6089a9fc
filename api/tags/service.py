from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from api import lookup
from api.errors import Conflict, Unprocessable
from shared.models import Tag


async def get(session: AsyncSession, ref: str | int) -> Tag:
    return await lookup.lookup(session, Tag, col(Tag.name), ref, "Tag")  # type: ignore[arg-type]


def _check_name(name: str) -> str:
    name = name.strip()
    if not name or "/" in name or name.isdigit():
        raise Unprocessable(
            f"Tag name '{name}' is not allowed: it must be non-empty, without '/', and not "
            "all digits (that would read as an id)"
        )
    return name


async def ensure_tags(session: AsyncSession, names: Iterable[str]) -> list[Tag]:
    """The tags named, created when missing (also when another request creates them now)."""
    wanted = list(dict.fromkeys(_check_name(n) for n in names))
    if not wanted:
        return []
    found = {t.name: t for t in await session.scalars(select(Tag).where(col(Tag.name).in_(wanted)))}
    for name in wanted:
        if name in found:
            continue
        try:
            async with session.begin_nested():
                tag = Tag(name=name)
                session.add(tag)
        except IntegrityError:
            tag = (await session.scalars(select(Tag).where(col(Tag.name) == name))).one()
        found[name] = tag
    return [found[n] for n in wanted]


async def create(session: AsyncSession, name: str) -> Tag:
    name = _check_name(name)
    if await session.scalar(select(col(Tag.id)).where(col(Tag.name) == name)) is not None:
        raise Conflict(f"Tag '{name}' already exists")
    tag = Tag(name=name)
    session.add(tag)
    await session.flush()
    return tag


async def rename(session: AsyncSession, tag: Tag, name: str) -> None:
    name = _check_name(name)
    if name == tag.name:
        return
    if await session.scalar(select(col(Tag.id)).where(col(Tag.name) == name)) is not None:
        raise Conflict(f"Tag '{name}' already exists")
    tag.name = name
    await session.flush()
