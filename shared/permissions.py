"""Permission names (those of 6.x plus the new ones) and the built-in roles."""

from __future__ import annotations

TASK_PERMISSIONS = (
    "task_read",
    "task_read_all",
    "task_add",
    "task_update_status",
    "task_update_status_all",
    "task_update_user",
    "task_update_all",
    "task_update_lock_all",
    "task_delete",
)
TEMPLATE_PERMISSIONS = ("template_add", "template_update", "template_delete")
TAG_PERMISSIONS = ("tag_add", "tag_update", "tag_delete")
USER_PERMISSIONS = (
    "user_read",
    "user_read_all",
    "user_add",
    "user_update_all",
    "user_update_assignment_weight",
    "user_delete",
)
GROUP_PERMISSIONS = (
    "group_read",
    "group_read_all",
    "group_add",
    "group_update",
    "group_delete",
)
OTHER_PERMISSIONS = ("roles_manage", "webhook_manage", "delivery_manage")

ALL_PERMISSIONS: tuple[str, ...] = (
    TASK_PERMISSIONS
    + TEMPLATE_PERMISSIONS
    + TAG_PERMISSIONS
    + USER_PERMISSIONS
    + GROUP_PERMISSIONS
    + OTHER_PERMISSIONS
)

BUILTIN_ROLES: dict[str, tuple[str, tuple[str, ...]]] = {
    "admin": ("Administrator: every permission", ALL_PERMISSIONS),
    "superuser": (
        "Coordinator: reads and reassigns every task, manages tags and group members",
        (
            "task_read_all",
            "task_update_status_all",
            "task_update_user",
            "task_update_lock_all",
            "tag_add",
            "tag_update",
            "user_read_all",
            "user_update_assignment_weight",
            "group_read_all",
            "group_update",
        ),
    ),
    "user": (
        "Reader: reads, locks and sets the status of its own and its groups' tasks",
        ("task_read", "task_update_status", "user_read", "group_read"),
    ),
}

READER_ROLE = "user"
