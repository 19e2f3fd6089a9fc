from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column, String
from sqlmodel import Field, SQLModel

from shared.models.base import LongText, UTCDateTime, utcnow


class TaskGroup(SQLModel, table=True):
    __tablename__ = "taskgroups"

    id: int | None = Field(default=None, primary_key=True)
    label: str = Field(sa_column=Column(String(128), nullable=False, unique=True))
    callback_url: str | None = Field(default=None, max_length=2048)
    callback_content: str | None = Field(default=None, sa_column=Column(LongText))
    # The derived status last seen; lets a completion be announced exactly once.
    status: str = Field(default="queued", max_length=16)
    create_time: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
