from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from api.auth.service import Actor
from api.deliveries import service
from api.deliveries.schemas import DeliveryDetail, DeliveryList, DeliveryRead, DeliveryStatus
from api.deliveries.service import DeliveryFilter
from api.deps import SessionDep, SettingsDep, require
from api.errors import problem_responses
from api.refs import MAX_ID

router = APIRouter(
    prefix="/deliveries",
    tags=["deliveries"],
    responses=problem_responses(401, 403, 404, 409, 413, 422),
)

ManageDeliveries = Annotated[Actor, Depends(require("delivery_manage"))]


class ListParams:
    def __init__(
        self,
        status: DeliveryStatus | None = Query(None, description="pending, delivered or failed"),
        task: str | None = Query(None, max_length=2048, description="Task id or uri"),
        url: str | None = Query(None, max_length=2048, description="The exact target URL"),
        event_type: str | None = Query(None, max_length=255, description="e.g. task.status.done"),
        offset: int = Query(0, ge=0, le=MAX_ID),
        limit: int | None = Query(None, ge=1, description="Default and maximum: the max page"),
    ) -> None:
        self.filter = DeliveryFilter(status=status, task=task, url=url, event_type=event_type)
        self.offset = offset
        self.limit = limit


@router.get("", summary="List callback and webhook deliveries, newest first")
async def list_deliveries(
    session: SessionDep,
    settings: SettingsDep,
    _: ManageDeliveries,
    params: Annotated[ListParams, Depends()],
) -> DeliveryList:
    limit = min(params.limit or settings.max_page, settings.max_page)
    deliveries, total = await service.list_deliveries(session, params.filter, params.offset, limit)
    return DeliveryList(
        deliveries=[service.read(d) for d in deliveries],
        total_deliveries=total,
        offset=params.offset,
        limit=limit,
    )


@router.get("/{delivery_id}", summary="Get a delivery and every attempt made (oldest first)")
async def get_delivery(
    delivery_id: int, session: SessionDep, _: ManageDeliveries
) -> DeliveryDetail:
    return await service.read_detail(session, await service.get(session, delivery_id))


@router.post(
    "/{delivery_id}/retry",
    summary="Send a failed delivery again (pending from now, with a fresh deadline)",
)
async def retry_delivery(
    delivery_id: int, session: SessionDep, _: ManageDeliveries
) -> DeliveryRead:
    return service.read(await service.retry(session, delivery_id))
