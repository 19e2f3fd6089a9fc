from __future__ import annotations

from sqlmodel import Field, SQLModel


class GroupMember(SQLModel, table=True):
    __tablename__ = "group_members"

    group_id: int = Field(foreign_key="groups.id", primary_key=True, ondelete="CASCADE")
    user_id: int = Field(foreign_key="users.id", primary_key=True, ondelete="CASCADE", index=True)
    # Tasks of this group pushed to this member by weighted distribution (section 3).
    pushed_count: int = Field(default=0)
