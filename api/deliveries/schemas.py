from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel


class DeliveryStatus(StrEnum):
    pending = "pending"
    delivered = "delivered"
    failed = "failed"


class AttemptRead(BaseModel):
    attempted_at: datetime
    duration_ms: float
    status_code: int | None
    error: str | None
    response: str | None


class DeliveryRead(BaseModel):
    uri: str
    id: int
    event_id: str
    event_type: str
    target: str
    webhook_id: int | None
    task_id: int | None
    taskgroup_id: int | None
    method: str
    url: str
    status: str
    attempts: int
    next_attempt_at: datetime | None
    deadline_at: datetime
    last_status_code: int | None
    last_error: str | None
    occurred_at: datetime
    created_at: datetime
    delivered_at: datetime | None


class DeliveryDetail(DeliveryRead):
    attempts_log: list[AttemptRead]


class DeliveryList(BaseModel):
    deliveries: list[DeliveryRead]
    total_deliveries: int
    offset: int
    limit: int
