from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

Ref = str | int
INT32 = 2**31 - 1


class TaskCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    project: str | None = Field(
        default=None, min_length=1, max_length=128, description="Default: TASKMAN_PROJECT_NAME"
    )
    template: Ref = Field(description="Template id, label or uri")
    content: Any = Field(description="Stored as sent when a string, else as its JSON text")
    tags: list[str] = Field(default_factory=list, description="Tag names; missing ones are created")
    users: list[Ref] = Field(default_factory=list)
    groups: list[Ref] = Field(default_factory=list)
    distribute_in_group: Ref | None = Field(
        default=None, description="Give the task to one member of this group, by weight"
    )
    callback_url: str | None = Field(default=None, max_length=2048)
    callback_content: Any = None
    generator_url: str | None = Field(default=None, max_length=2048)
    application_name: str | None = Field(default=None, max_length=128)
    application_version: str | None = Field(default=None, max_length=64)
    tracking_id: str | None = Field(default=None, max_length=255)
    priority: int = Field(default=0, ge=-INT32, le=INT32)


class TaskUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    status: str | None = None
    project: str | None = Field(default=None, min_length=1, max_length=128)
    template: Ref | None = None
    content: Any = None
    tags: list[str] | None = None
    users: list[Ref] | None = None
    groups: list[Ref] | None = None
    callback_url: str | None = Field(default=None, max_length=2048)
    callback_content: Any = None
    generator_url: str | None = Field(default=None, max_length=2048)
    application_name: str | None = Field(default=None, max_length=128)
    application_version: str | None = Field(default=None, max_length=64)
    tracking_id: str | None = Field(default=None, max_length=255)
    priority: int | None = Field(default=None, ge=-INT32, le=INT32)
    lock_version: int | None = Field(
        default=None, description="Precondition: the lock_version the caller holds"
    )


class TagRef(BaseModel):
    uri: str
    name: str


class TaskSummary(BaseModel):
    uri: str
    id: int
    status: str
    project: str
    template: str
    tags: list[TagRef]


class TaskList(BaseModel):
    tasks: list[TaskSummary]
    total_tasks: int
    offset: int
    limit: int


class TaskRead(BaseModel):
    uri: str
    id: int
    project: str
    template: str
    content: str
    status: str
    lock: str
    tags: list[str]
    callback_url: str | None
    callback_content: str | None
    generator_url: str | None
    application_name: str | None
    application_version: str | None
    tracking_id: str | None
    priority: int
    create_time: datetime
    update_time: datetime
    users: list[str]
    groups: list[str]
    users_via_group: list[str]
    lock_holder: str | None
    lock_expires_at: datetime | None
    lock_version: int
    taskgroup: str | None = None


class LockRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    lock: Ref | None = Field(default=None, description="Lock for this user (default: caller)")
    lock_version: int | None = Field(default=None, description="Precondition")


class LockRead(BaseModel):
    lock: str | None
    username: str | None
    error: str | None = None
    lock_expires_at: datetime | None
    lock_version: int


class ClaimRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    project: str | None = None
    template: Ref | None = Field(default=None, description="Template id, label or uri")
    application_name: str | None = None
    tags: list[str] = Field(default_factory=list, description="All of these tags")
    group: Ref | None = Field(default=None, description="Only tasks of this group")


class BulkCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tasks: list[TaskCreate] = Field(min_length=1, max_length=10_000)


class BulkSkipped(BaseModel):
    index: int = Field(description="Position in the request")
    tracking_id: str
    task: str | None = Field(description="The task that already exists")
    duplicate_of: int | None = Field(
        default=None, description="Position of the same task earlier in this request"
    )


class BulkResult(BaseModel):
    created: int
    skipped: int
    tasks: list[str] = Field(description="The created tasks, in request order")
    skipped_tasks: list[BulkSkipped]
