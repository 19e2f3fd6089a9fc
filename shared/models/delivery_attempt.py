from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column, ForeignKey, Integer
from sqlmodel import Field, SQLModel

from shared.models.base import LongText, UTCDateTime


class DeliveryAttempt(SQLModel, table=True):
    """One try at a delivery: what came back (or why nothing did) and how long it took."""

    __tablename__ = "delivery_attempts"

    id: int | None = Field(default=None, primary_key=True)
    delivery_id: int = Field(
        sa_column=Column(
            Integer, ForeignKey("deliveries.id", ondelete="CASCADE"), nullable=False, index=True
        )
    )
    attempted_at: datetime = Field(sa_type=UTCDateTime, nullable=False)
    duration_ms: float = Field(default=0.0)
    status_code: int | None = Field(default=None)
    error: str | None = Field(default=None, max_length=512)
    # The first KiB of the receiver's answer.
    response: str | None = Field(default=None, sa_column=Column(LongText))
