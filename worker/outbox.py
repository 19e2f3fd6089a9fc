"""Taking unpublished outbox rows, in order, so that several relays never take the same row."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlmodel import col

from shared.models import OutboxEvent, utcnow

_TABLE = OutboxEvent.__table__  # type: ignore[attr-defined]


@dataclass(frozen=True)
class OutboxRow:
    id: int
    event_id: str
    type: str
    payload: str


async def take(connection: AsyncConnection, limit: int) -> list[OutboxRow]:
    """The oldest unpublished rows, locked until the caller's transaction ends.

    Relays take turns (no SKIP LOCKED): a second relay waits on the rows the first holds
    and then finds them published, so a task's events are published in order even with
    several relays. SQLite's writer lock (BEGIN IMMEDIATE) serializes them the same way.
    """
    query = (
        select(_TABLE.c.id, _TABLE.c.event_id, _TABLE.c.type, _TABLE.c.payload)
        .where(_TABLE.c.published_at.is_(None))
        .order_by(_TABLE.c.id)
        .limit(limit)
    )
    if connection.dialect.name != "sqlite":
        query = query.with_for_update()
    rows = (await connection.execute(query)).all()
    return [OutboxRow(*row) for row in rows]


async def mark_published(connection: AsyncConnection, ids: Sequence[int]) -> None:
    if ids:
        await connection.execute(
            update(OutboxEvent)
            .where(col(OutboxEvent.id).in_(list(ids)))
            .values(published_at=utcnow())
        )


async def purge_published(connection: AsyncConnection, before: datetime) -> int:
    """Delete rows published before `before`: the outbox is a hand-over, not an archive."""
    result = await connection.execute(
        delete(OutboxEvent).where(
            col(OutboxEvent.published_at).is_not(None), col(OutboxEvent.published_at) < before
        )
    )
    return int(result.rowcount or 0)
