from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, EmailStr, Field

USERNAME = r"^[A-Za-z0-9_.@+-]*[A-Za-z_.@+-][A-Za-z0-9_.@+-]*$"


class UserCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    username: str = Field(min_length=1, max_length=64, pattern=USERNAME)
    name: str | None = Field(default=None, max_length=255)
    email: EmailStr | None = None
    password: str = Field(min_length=1, max_length=1024)
    active: bool = True
    assignment_weight: float = Field(default=1.0, ge=0, allow_inf_nan=False)


class UserUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    username: str | None = Field(default=None, min_length=1, max_length=64, pattern=USERNAME)
    name: str | None = Field(default=None, max_length=255)
    email: EmailStr | None = None
    password: str | None = Field(default=None, min_length=1, max_length=1024)
    active: bool | None = None
    assignment_weight: float | None = Field(default=None, ge=0, allow_inf_nan=False)


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
