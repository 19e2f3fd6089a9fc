from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column, Double, String
from sqlmodel import Field, SQLModel

from shared.models.base import UTCDateTime, utcnow


class User(SQLModel, table=True):
    __tablename__ = "users"

    id: int | None = Field(default=None, primary_key=True)
    username: str = Field(sa_column=Column(String(64), nullable=False, unique=True))
    name: str | None = Field(default=None, max_length=255)
    email: str | None = Field(default=None, sa_column=Column(String(255), unique=True))
    password_hash: str = Field(max_length=255)
    active: bool = Field(default=True)
    assignment_weight: float = Field(default=1.0, sa_type=Double)
    # Bumped when the password changes or the user is deactivated: ends every token issued.
    token_version: int = Field(default=0)
    # Tasks pushed to this user by weighted distribution among all readers (section 3).
    pushed_count: int = Field(default=0)
    create_time: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
