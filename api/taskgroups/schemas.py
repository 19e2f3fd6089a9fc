from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from api.tasks.schemas import Ref, TaskCreate, TaskSummary


class DistributeMethod(StrEnum):
    same = "same"
    unique = "unique"


class TaskGroupCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    label: str = Field(min_length=1, max_length=128, pattern=r"^[^/]+$")
    callback_url: str | None = Field(default=None, max_length=2048)
    callback_content: Any = None
    tasks: list[TaskCreate] = Field(min_length=1, max_length=10_000)
    distribute_in_group: Ref | None = None
    distribute_method: DistributeMethod = DistributeMethod.same


class TaskGroupUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    label: str | None = Field(default=None, min_length=1, max_length=128, pattern=r"^[^/]+$")
    callback_url: str | None = Field(default=None, max_length=2048)
    callback_content: Any = None


class TaskGroupBrief(BaseModel):
    uri: str
    id: int
    label: str
    status: str


class TaskGroupRead(TaskGroupBrief):
    callback_url: str | None
    callback_content: str | None
    tasks: list[TaskSummary]


class TaskGroupList(BaseModel):
    taskgroups: list[TaskGroupBrief]
