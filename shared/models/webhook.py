from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column, String, Text
from sqlmodel import Field, SQLModel

from shared.models.base import UTCDateTime, utcnow


class Webhook(SQLModel, table=True):
    """A subscription: every event whose type matches one of `events` is POSTed to `url`."""

    __tablename__ = "webhooks"

    id: int | None = Field(default=None, primary_key=True)
    url: str = Field(sa_column=Column(String(2048), nullable=False))
    # A JSON list of AMQP topic patterns (`*` one word, `#` any number of words).
    events: str = Field(sa_column=Column(Text, nullable=False))
    secret: str = Field(sa_column=Column(String(128), nullable=False))
    enabled: bool = Field(default=True)
    description: str | None = Field(default=None, max_length=512)
    create_time: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    update_time: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
