"""The 6.x configuration format (roles, users, groups, tags, templates) and the import report."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, EmailStr, Field, StringConstraints

from api.groups.schemas import GroupCreate
from api.names import Name, not_an_id
from api.roles.schemas import RoleCreate
from api.users.schemas import Password, Username, Weight


def _none_is_empty(value: Any) -> Any:
    """`users:` with nothing under it is YAML null: an empty section."""
    return [] if value is None else value


TagName = Annotated[
    str,
    BeforeValidator(not_an_id),
    StringConstraints(strip_whitespace=True, min_length=1, max_length=128, pattern=r"^[^/]+$"),
]


class ConfigUser(BaseModel):
    model_config = ConfigDict(extra="forbid")

    username: Username
    name: str | None = Field(default=None, max_length=255)
    email: EmailStr | None = None
    password: Password | None = None
    active: bool | None = None
    assignment_weight: Weight | None = None
    roles: list[Name] | None = None


class ConfigFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    roles: Annotated[list[RoleCreate], BeforeValidator(_none_is_empty)] = Field(
        default_factory=list
    )
    users: Annotated[list[ConfigUser], BeforeValidator(_none_is_empty)] = Field(
        default_factory=list
    )
    groups: Annotated[list[GroupCreate], BeforeValidator(_none_is_empty)] = Field(
        default_factory=list
    )
    tags: Annotated[list[TagName], BeforeValidator(_none_is_empty)] = Field(default_factory=list)
    templates: Annotated[list[Any], BeforeValidator(_none_is_empty)] = Field(default_factory=list)


class ConfigImport(BaseModel):
    model_config = ConfigDict(extra="forbid")

    config_definition: str = Field(description="The configuration file's text (YAML or JSON)")


class Names(BaseModel):
    roles: list[str] = Field(default_factory=list)
    users: list[str] = Field(default_factory=list)
    groups: list[str] = Field(default_factory=list)
    tags: list[str] = Field(default_factory=list)


class SkippedNames(Names):
    templates: list[str] = Field(default_factory=list)


class ImportReport(BaseModel):
    created: Names = Field(default_factory=Names)
    updated: Names = Field(default_factory=Names)
    skipped: SkippedNames = Field(default_factory=SkippedNames)
