from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from api.names import Name
from shared.permissions import ALL_PERMISSIONS


def known_permissions(value: list[str]) -> list[str]:
    unknown = [p for p in value if p not in ALL_PERMISSIONS]
    if unknown:
        raise ValueError(f"unknown permission(s): {', '.join(unknown)}")
    return list(dict.fromkeys(value))


Permissions = Annotated[list[str], AfterValidator(known_permissions)]


class RoleCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Name
    description: str | None = Field(default=None, max_length=255)
    permissions: Permissions = Field(default_factory=list)


class RoleUpdate(BaseModel):
    """A partial update; `permissions`, when sent, replaces the role's set."""

    model_config = ConfigDict(extra="forbid")

    name: Name | None = None
    description: str | None = Field(default=None, max_length=255)
    permissions: Permissions | None = None


class RoleRead(BaseModel):
    uri: str
    id: int
    name: str
    description: str | None
    update_datetime: datetime
    permissions: list[str]


class RoleList(BaseModel):
    roles: list[RoleRead]


class UserRoleRead(BaseModel):
    role: str
    user: str
    has_role: bool
