from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from api.deliveries.schemas import AttemptRead, DeliveryDetail, DeliveryRead, DeliveryStatus
from api.errors import Conflict, NotFound, Unprocessable
from api.refs import MAX_ID, parse_ref, uri
from shared.delivery.policy import RetryPolicy
from shared.models import Delivery, DeliveryAttempt, utcnow


@dataclass
class DeliveryFilter:
    status: DeliveryStatus | None = None
    task: str | None = None
    url: str | None = None
    event_type: str | None = None


def _task_id(ref: str) -> int:
    key = parse_ref(ref)
    if not isinstance(key, int):
        raise Unprocessable(f"task must be a task id or uri, got '{ref}'")
    return key


def _where(filters: DeliveryFilter) -> list[Any] | None:
    """The conditions of `filters`; None when they cannot match any delivery."""
    where: list[Any] = []
    if filters.status is not None:
        where.append(col(Delivery.status) == filters.status.value)
    if filters.task is not None:
        task_id = _task_id(filters.task)
        if not 0 < task_id <= MAX_ID:
            return None
        where.append(col(Delivery.task_id) == task_id)
    if filters.url is not None:
        where.append(col(Delivery.url) == filters.url)
    if filters.event_type is not None:
        where.append(col(Delivery.event_type) == filters.event_type)
    return where


def read(delivery: Delivery) -> DeliveryRead:
    return DeliveryRead(
        uri=uri("deliveries", delivery.id),
        **delivery.model_dump(include=set(DeliveryRead.model_fields) - {"uri"}),
    )


async def list_deliveries(
    session: AsyncSession, filters: DeliveryFilter, offset: int, limit: int
) -> tuple[list[Delivery], int]:
    """A page of the deliveries that match, newest first, and how many match in all."""
    where = _where(filters)
    if where is None:
        return [], 0
    rows = await session.scalars(
        select(Delivery).where(*where).order_by(col(Delivery.id).desc()).offset(offset).limit(limit)
    )
    total = await session.scalar(select(func.count()).select_from(Delivery).where(*where)) or 0
    return list(rows), total


async def get(session: AsyncSession, delivery_id: int) -> Delivery:
    found = await session.get(Delivery, delivery_id) if 0 < delivery_id <= MAX_ID else None
    if found is None:
        raise NotFound(f"Delivery {delivery_id} not found")
    return found


async def read_detail(session: AsyncSession, delivery: Delivery) -> DeliveryDetail:
    attempts = await session.scalars(
        select(DeliveryAttempt)
        .where(col(DeliveryAttempt.delivery_id) == delivery.id)
        .order_by(col(DeliveryAttempt.attempted_at), col(DeliveryAttempt.id))
    )
    return DeliveryDetail(
        **read(delivery).model_dump(),
        attempts_log=[AttemptRead.model_validate(a, from_attributes=True) for a in attempts],
    )


async def retry(session: AsyncSession, delivery_id: int) -> Delivery:
    """Send a failed delivery again: pending from now, with a fresh deadline.

    One conditional UPDATE, so two admins retrying at once make one retry and one 409.
    """
    delivery = await get(session, delivery_id)
    now = utcnow()
    result = await session.execute(
        update(Delivery)
        .where(
            col(Delivery.id) == delivery_id,
            col(Delivery.status) == DeliveryStatus.failed.value,
        )
        .values(
            status=DeliveryStatus.pending.value,
            next_attempt_at=now,
            deadline_at=now + RetryPolicy().give_up_after,
            claimed_by=None,
            claimed_until=None,
            updated_at=now,
        )
        .execution_options(synchronize_session=False)
    )
    await session.refresh(delivery)
    if result.rowcount != 1:  # type: ignore[attr-defined]
        raise Conflict(
            f"Delivery {delivery_id} is {delivery.status}: only a failed delivery can be retried",
            delivery_status=delivery.status,
        )
    return delivery
