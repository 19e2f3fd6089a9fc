from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from api.tasks.schemas import TagRef, TaskSummary

TAG_NAME = r"^[^/]+$"


class TagCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=128, pattern=TAG_NAME)


class TagUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=128, pattern=TAG_NAME)


class TagRead(BaseModel):
    uri: str
    id: int
    name: str
    tasks: list[str]


class TagList(BaseModel):
    tags: list[TagRef]


class TagTasks(BaseModel):
    tasks: list[TaskSummary]
