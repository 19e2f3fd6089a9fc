from __future__ import annotations

import json
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from api.errors import NotFound
from api.refs import MAX_ID, uri
from api.webhooks.schemas import (
    WebhookCreate,
    WebhookCreated,
    WebhookRead,
    WebhookUpdate,
)
from shared.delivery.signing import new_secret
from shared.models import Webhook, utcnow


def read(webhook: Webhook) -> WebhookRead:
    return WebhookRead(
        uri=uri("webhooks", webhook.id),
        id=webhook.id or 0,
        url=webhook.url,
        events=json.loads(webhook.events),
        enabled=webhook.enabled,
        description=webhook.description,
        create_time=webhook.create_time,
        update_time=webhook.update_time,
    )


def read_with_secret(webhook: Webhook) -> WebhookCreated:
    return WebhookCreated(**read(webhook).model_dump(), secret=webhook.secret)


async def get(session: AsyncSession, webhook_id: int) -> Webhook:
    found = await session.get(Webhook, webhook_id) if 0 < webhook_id <= MAX_ID else None
    if found is None:
        raise NotFound(f"Webhook {webhook_id} not found")
    return found


async def list_webhooks(
    session: AsyncSession, offset: int, limit: int
) -> tuple[list[Webhook], int]:
    rows = await session.scalars(
        select(Webhook).order_by(col(Webhook.id)).offset(offset).limit(limit)
    )
    total = await session.scalar(select(func.count()).select_from(Webhook)) or 0
    return list(rows), total


async def create(session: AsyncSession, data: WebhookCreate) -> Webhook:
    now = utcnow()
    webhook = Webhook(
        url=data.url,
        events=json.dumps(data.events),
        secret=data.secret or new_secret(),
        enabled=data.enabled,
        description=data.description,
        create_time=now,
        update_time=now,
    )
    session.add(webhook)
    await session.flush()
    return webhook


def _later_than(previous: datetime) -> datetime:
    """Now, or just after `previous` if the clock has not moved past it: the worker notices a
    change by a larger max(update_time), so an update must never leave it where it was."""
    return max(utcnow(), previous + timedelta(microseconds=1))


async def update(session: AsyncSession, webhook: Webhook, data: WebhookUpdate) -> None:
    sent = data.model_fields_set
    if data.url is not None:
        webhook.url = data.url
    if data.events is not None:
        webhook.events = json.dumps(data.events)
    if data.secret is not None:
        webhook.secret = data.secret
    if data.enabled is not None:
        webhook.enabled = data.enabled
    if "description" in sent:
        webhook.description = data.description
    webhook.update_time = _later_than(webhook.update_time)
    await session.flush()


async def delete(session: AsyncSession, webhook: Webhook) -> None:
    await session.delete(webhook)
    await session.flush()
