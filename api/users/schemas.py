from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict, EmailStr, Field, StringConstraints

from api.names import not_an_id
from shared.permissions import READER_ROLE

USERNAME = r"^[A-Za-z0-9_.@+-]*[A-Za-z_.@+-][A-Za-z0-9_.@+-]*$"

Username = Annotated[
    str,
    BeforeValidator(not_an_id),
    StringConstraints(min_length=1, max_length=64, pattern=USERNAME),
]
Password = Annotated[str, StringConstraints(min_length=1, max_length=1024)]
Weight = Annotated[float, Field(ge=0, allow_inf_nan=False)]


class UserCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    username: Username
    name: str | None = Field(default=None, max_length=255)
    email: EmailStr | None = None
    password: Password
    active: bool = True
    assignment_weight: Weight = 1.0
    roles: list[str] = Field(
        default_factory=lambda: [READER_ROLE],
        description="Roles to give the new user (default: the reader role `user`; other "
        "roles need roles_manage)",
    )


class UserUpdate(BaseModel):
    """A partial update: only the fields sent are changed."""

    model_config = ConfigDict(extra="forbid")

    username: Username | None = None
    name: str | None = Field(default=None, max_length=255)
    email: EmailStr | None = None
    password: Password | None = None
    active: bool | None = None
    assignment_weight: Weight | None = None


class UserRead(BaseModel):
    uri: str
    id: int
    username: str
    name: str | None
    email: str | None
    active: bool
    create_time: datetime
    assignment_weight: float
    tasks: str
    groups: str
    roles: list[str] = Field(default_factory=list)


class UserList(BaseModel):
    users: list[str]


class UserGroups(BaseModel):
    groups: list[str]
