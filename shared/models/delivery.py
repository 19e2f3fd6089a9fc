from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column, Index, String, UniqueConstraint
from sqlmodel import Field, SQLModel

from shared.models.base import LongText, UTCDateTime, utcnow


class Delivery(SQLModel, table=True):
    """One HTTP request that an event asks for (a callback or a webhook POST), until it lands.

    `(event_id, target)` is unique, so an event consumed twice (at-least-once delivery from
    the broker) still makes one delivery per target. A worker owns a delivery while
    `claimed_until` lies in the future; a crashed worker's claims simply run out.
    """

    __tablename__ = "deliveries"
    __table_args__ = (
        UniqueConstraint("event_id", "target"),
        Index("ix_deliveries_status_next_attempt_at", "status", "next_attempt_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    event_id: str = Field(sa_column=Column(String(36), nullable=False))
    event_type: str = Field(max_length=64)
    # "callback", "taskgroup_callback" or "webhook:<id>".
    target: str = Field(sa_column=Column(String(64), nullable=False))
    webhook_id: int | None = Field(default=None, index=True)
    task_id: int | None = Field(default=None, index=True)
    taskgroup_id: int | None = Field(default=None)
    method: str = Field(max_length=8)
    url: str = Field(sa_column=Column(String(2048), nullable=False))
    content_type: str = Field(max_length=64)
    body: str = Field(sa_column=Column(LongText, nullable=False))
    # pending -> delivered | failed (permanent error or gave up); an admin retry -> pending.
    status: str = Field(default="pending", max_length=16)
    attempts: int = Field(default=0)
    next_attempt_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    deadline_at: datetime = Field(sa_type=UTCDateTime, nullable=False)
    claimed_by: str | None = Field(default=None, max_length=64)
    claimed_until: datetime | None = Field(default=None, sa_type=UTCDateTime)
    last_status_code: int | None = Field(default=None)
    last_error: str | None = Field(default=None, max_length=512)
    occurred_at: datetime = Field(sa_type=UTCDateTime, nullable=False)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    delivered_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
