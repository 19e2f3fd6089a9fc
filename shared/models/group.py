from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column, String
from sqlmodel import Field, SQLModel

from shared.models.base import UTCDateTime, utcnow


class Group(SQLModel, table=True):
    __tablename__ = "groups"

    id: int | None = Field(default=None, primary_key=True)
    groupname: str = Field(sa_column=Column(String(64), nullable=False, unique=True))
    name: str | None = Field(default=None, max_length=255)
    create_time: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
