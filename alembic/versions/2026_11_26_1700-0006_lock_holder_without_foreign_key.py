"""tasks.lock_holder_id without a foreign key on PostgreSQL and MariaDB

The foreign key made every claim lock the claimer's user row (PostgreSQL `FOR KEY SHARE`,
InnoDB a shared record lock) until commit: concurrent claims of one reader all locked the
same row, which PostgreSQL records as a new multixact per claim. One reader's claim
statement on 16 connections, runs alternated with and without the key: 3,450/s against
3,720/s on average. Nothing relies on it: users are never
deleted (DELETE /users/{name} deactivates), every claim checks the claimer's user row in the
same statement, and the index on the column stays. SQLite keeps it: its check takes no
lock, and dropping it there would mean rebuilding the task table.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-26
"""

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NAME = "fk_tasks_lock_holder_id_users"


def upgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        op.drop_constraint(NAME, "tasks", type_="foreignkey")


# Without the key a user row deleted by hand can leave a holder that no longer exists: its
# task goes back to the queue before the key returns.
RELEASE_VANISHED_HOLDERS = sa.text(
    "UPDATE tasks SET lock_holder_id = NULL, lock_expires_at = NULL,"
    " status = CASE WHEN status = 'locked' THEN 'queued' ELSE status END"
    " WHERE lock_holder_id IS NOT NULL"
    " AND NOT EXISTS (SELECT 1 FROM users WHERE users.id = tasks.lock_holder_id)"
)


def downgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        op.execute(RELEASE_VANISHED_HOLDERS)
        op.create_foreign_key(
            NAME, "tasks", "users", ["lock_holder_id"], ["id"], ondelete="SET NULL"
        )
