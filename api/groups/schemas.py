from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from api.names import Name

UserRef = str | int


class GroupCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    groupname: Name
    name: str | None = Field(default=None, max_length=255)
    members: list[UserRef] = Field(default_factory=list, description="Users by id, username or uri")


class GroupUpdate(BaseModel):
    """A partial update; `members`, when sent, replaces the group's member set."""

    model_config = ConfigDict(extra="forbid")

    groupname: Name | None = None
    name: str | None = Field(default=None, max_length=255)
    members: list[UserRef] | None = Field(default=None, description="Users by id, username or uri")


class GroupMemberRead(BaseModel):
    user: str
    username: str
    assignment_weight: float
    active: bool = True
    visible_queued_tasks: int = Field(
        default=0, description="How many of the group's queued tasks this member's share shows"
    )


class GroupRead(BaseModel):
    uri: str
    id: int
    groupname: str
    name: str | None
    create_time: datetime
    tasks: str
    users: str
    members: list[GroupMemberRead]
    queued_tasks: int = Field(default=0, description="The group's queued tasks")


class GroupList(BaseModel):
    groups: list[str]


class GroupUsers(BaseModel):
    users: list[str]


class MembershipRead(BaseModel):
    group: str
    user: str
    member: bool
