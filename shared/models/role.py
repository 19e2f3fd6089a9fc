from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column, String
from sqlmodel import Field, SQLModel

from shared.models.base import UTCDateTime, utcnow


class Role(SQLModel, table=True):
    __tablename__ = "roles"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(sa_column=Column(String(64), nullable=False, unique=True))
    description: str | None = Field(default=None, max_length=255)
    update_datetime: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
