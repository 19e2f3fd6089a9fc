from __future__ import annotations

from sqlmodel import Field, SQLModel


class TaskUser(SQLModel, table=True):
    """A task assigned directly to a user."""

    __tablename__ = "task_users"

    task_id: int = Field(foreign_key="tasks.id", primary_key=True, ondelete="CASCADE")
    user_id: int = Field(foreign_key="users.id", primary_key=True, ondelete="CASCADE", index=True)
