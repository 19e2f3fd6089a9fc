from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response

from api.auth.service import Actor
from api.deps import SessionDep, SettingsDep, require
from api.errors import problem_responses
from api.refs import MAX_ID
from api.webhooks import service
from api.webhooks.schemas import (
    WebhookCreate,
    WebhookCreated,
    WebhookList,
    WebhookRead,
    WebhookUpdate,
)

router = APIRouter(
    prefix="/webhooks",
    tags=["webhooks"],
    responses=problem_responses(401, 403, 404, 413, 422),
)

ManageWebhooks = Annotated[Actor, Depends(require("webhook_manage"))]


@router.get("", summary="List webhook subscriptions (oldest first; secrets are not shown)")
async def list_webhooks(
    session: SessionDep,
    settings: SettingsDep,
    _: ManageWebhooks,
    offset: int = Query(0, ge=0, le=MAX_ID),
    limit: int | None = Query(None, ge=1, description="Default and maximum: the max page"),
) -> WebhookList:
    limit = min(limit or settings.max_page, settings.max_page)
    webhooks, total = await service.list_webhooks(session, offset, limit)
    return WebhookList(
        webhooks=[service.read(w) for w in webhooks],
        total_webhooks=total,
        offset=offset,
        limit=limit,
    )


@router.post(
    "",
    status_code=201,
    summary="Subscribe a URL to events; the response shows the signing secret, once",
)
async def create_webhook(
    data: WebhookCreate, session: SessionDep, _: ManageWebhooks
) -> WebhookCreated:
    return service.read_with_secret(await service.create(session, data))


@router.get("/{webhook_id}", summary="Get a webhook subscription (without its secret)")
async def get_webhook(webhook_id: int, session: SessionDep, _: ManageWebhooks) -> WebhookRead:
    return service.read(await service.get(session, webhook_id))


@router.put("/{webhook_id}", summary="Change a webhook subscription (partial)")
async def update_webhook(
    webhook_id: int, data: WebhookUpdate, session: SessionDep, _: ManageWebhooks
) -> WebhookRead:
    webhook = await service.get(session, webhook_id)
    await service.update(session, webhook, data)
    return service.read(webhook)


@router.delete("/{webhook_id}", status_code=204, summary="Delete a webhook subscription")
async def delete_webhook(webhook_id: int, session: SessionDep, _: ManageWebhooks) -> Response:
    await service.delete(session, await service.get(session, webhook_id))
    return Response(status_code=204)
