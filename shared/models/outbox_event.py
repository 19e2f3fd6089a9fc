from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column, Index, String
from sqlmodel import Field, SQLModel

from shared.models.base import LongText, UTCDateTime, utcnow


class OutboxEvent(SQLModel, table=True):
    """An event written in the same transaction as the change it describes."""

    __tablename__ = "outbox_events"
    __table_args__ = (Index("ix_outbox_events_published_at_id", "published_at", "id"),)

    id: int | None = Field(default=None, primary_key=True)
    event_id: str = Field(sa_column=Column(String(36), nullable=False, unique=True))
    type: str = Field(max_length=64)
    task_id: int | None = Field(default=None, index=True)
    taskgroup_id: int | None = Field(default=None)
    sequence: int = Field(default=0)
    payload: str = Field(sa_column=Column(LongText, nullable=False))
    # The body of the callback a done event makes, as the task (group) had it then.
    callback_content: str | None = Field(default=None, sa_column=Column(LongText))
    occurred_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    published_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
