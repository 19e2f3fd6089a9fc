from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column, Double, Index, String, UniqueConstraint, text
from sqlmodel import Field, SQLModel

from shared.models.base import LongText, UTCDateTime, utcnow


class Task(SQLModel, table=True):
    __tablename__ = "tasks"
    __table_args__ = (
        # Bulk upload de-duplicates on (project, template, tracking_id); it also writes the
        # tracking id here so that two bulk requests racing each other cannot both insert a
        # task. POST never de-duplicates (as 6.x) and leaves it NULL, which never collides.
        UniqueConstraint("project", "template_id", "bulk_key"),
        # Claim order: the queue of one status, highest priority first, then oldest.
        Index("ix_tasks_status_priority_id", "status", text("priority DESC"), "id"),
        Index("ix_tasks_lock_expires_at", "lock_expires_at"),
        # A study's systems find their tasks by tracking id within a project. On PostgreSQL
        # the three lookups by an optional column index only the rows that have it: every
        # claim and status change writes a new row version into each index of the table,
        # and these three then skip the rows without a value (migration 0007). Lookups are
        # by value (`= ...`), which implies IS NOT NULL, so they still use them.
        Index(
            "ix_tasks_project_tracking_id",
            "project",
            "tracking_id",
            postgresql_where=text("tracking_id IS NOT NULL"),
        ),
        Index(
            "ix_tasks_application_name",
            "application_name",
            postgresql_where=text("application_name IS NOT NULL"),
        ),
        Index(
            "ix_tasks_taskgroup_id",
            "taskgroup_id",
            postgresql_where=text("taskgroup_id IS NOT NULL"),
        ),
    )

    id: int | None = Field(default=None, primary_key=True)
    # Looked up through the unique key above, whose first column it is.
    project: str = Field(sa_column=Column(String(128), nullable=False))
    template_id: int = Field(foreign_key="task_templates.id", index=True, ondelete="RESTRICT")
    content: str = Field(sa_column=Column(LongText, nullable=False))
    status: str = Field(default="queued", max_length=16)
    priority: int = Field(default=0)
    tracking_id: str | None = Field(default=None, max_length=255)
    bulk_key: str | None = Field(default=None, max_length=255)
    callback_url: str | None = Field(default=None, max_length=2048)
    callback_content: str | None = Field(default=None, sa_column=Column(LongText))
    generator_url: str | None = Field(default=None, max_length=2048)
    application_name: str | None = Field(default=None, sa_column=Column(String(128), nullable=True))
    application_version: str | None = Field(default=None, max_length=64)
    taskgroup_id: int | None = Field(default=None, foreign_key="taskgroups.id", ondelete="SET NULL")
    # A user id, without a foreign key (migration 0006; SQLite keeps its): the key locked the
    # claimer's user row in every claim. Users are never deleted, only deactivated.
    lock_holder_id: int | None = Field(default=None, index=True)
    lock_expires_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    # Fencing token: increases at every new lock, so a stale holder can be recognised.
    lock_version: int = Field(default=0)
    # Stable hash in [0, 1) that decides which group members see the task (pull weights).
    share_hash: float = Field(default=0.0, sa_type=Double)
    # Last event sequence number of this task (events carry per-task increasing sequences).
    event_sequence: int = Field(default=0)
    create_time: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    update_time: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
