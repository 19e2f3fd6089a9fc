from __future__ import annotations

from sqlalchemy import Column, String
from sqlmodel import Field, SQLModel

from shared.models.base import LongText


class TaskTemplate(SQLModel, table=True):
    __tablename__ = "task_templates"

    id: int | None = Field(default=None, primary_key=True)
    label: str = Field(sa_column=Column(String(128), nullable=False, unique=True))
    content: str = Field(sa_column=Column(LongText, nullable=False))
