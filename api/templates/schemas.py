from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class TemplateCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    label: str = Field(min_length=1, max_length=128, pattern=r"^[^/]+$")
    content: Any = Field(description="The template: YAML or JSON text, or a JSON object")


class TemplateUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    label: str | None = Field(default=None, min_length=1, max_length=128, pattern=r"^[^/]+$")
    content: Any = None


class TemplateRead(BaseModel):
    uri: str
    id: int
    label: str
    content: str


class TemplateList(BaseModel):
    task_templates: list[str]
