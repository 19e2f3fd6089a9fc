"""done events keep the callback body they were made with

A task's (or task group's) `callback_content` is stored with its `task.status.done`
(`taskgroup.done`) outbox row, so the callback sends the body the task had when it was done,
even when the task is edited or deleted before a backlog of deliveries drains.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26
"""

from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.dialects import mysql

from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("outbox_events") as batch:
        batch.add_column(
            sa.Column(
                "callback_content",
                sa.Text().with_variant(mysql.LONGTEXT(), "mysql"),
                nullable=True,
            )
        )


def downgrade() -> None:
    with op.batch_alter_table("outbox_events") as batch:
        batch.drop_column("callback_content")
