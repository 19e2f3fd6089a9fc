from __future__ import annotations

from sqlmodel import Field, SQLModel


class TaskGroupLink(SQLModel, table=True):
    """A task assigned to a user group (its members share it)."""

    __tablename__ = "task_group_links"

    task_id: int = Field(foreign_key="tasks.id", primary_key=True, ondelete="CASCADE")
    group_id: int = Field(foreign_key="groups.id", primary_key=True, ondelete="CASCADE", index=True)
