"""The tables, one per module; importing this package registers them all on the metadata."""

from sqlmodel import SQLModel

from shared.models.base import UTCDateTime, utcnow
from shared.models.delivery import Delivery
from shared.models.delivery_attempt import DeliveryAttempt
from shared.models.group import Group
from shared.models.group_member import GroupMember
from shared.models.outbox_event import OutboxEvent
from shared.models.role import Role
from shared.models.role_permission import RolePermission
from shared.models.tag import Tag
from shared.models.task import Task
from shared.models.task_group_link import TaskGroupLink
from shared.models.task_tag import TaskTag
from shared.models.task_user import TaskUser
from shared.models.taskgroup import TaskGroup
from shared.models.template import TaskTemplate
from shared.models.user import User
from shared.models.user_role import UserRole
from shared.models.webhook import Webhook

metadata = SQLModel.metadata

__all__ = [
    "Delivery",
    "DeliveryAttempt",
    "Group",
    "GroupMember",
    "OutboxEvent",
    "Role",
    "RolePermission",
    "SQLModel",
    "Tag",
    "Task",
    "TaskGroup",
    "TaskGroupLink",
    "TaskTag",
    "TaskTemplate",
    "TaskUser",
    "UTCDateTime",
    "User",
    "UserRole",
    "Webhook",
    "metadata",
    "utcnow",
]
