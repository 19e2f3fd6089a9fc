"""outbox inserts no longer NOTIFY inside the writing transaction

The API process notifies the relays after its commits instead (shared/events/notify.py): a
NOTIFY inside a transaction holds PostgreSQL's notification-queue lock through the commit,
so every claim and status change queued behind the previous one's commit.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NOTIFY_FUNCTION = """
CREATE OR REPLACE FUNCTION taskmanager_outbox_notify() RETURNS trigger AS $$
BEGIN
    PERFORM pg_notify('taskmanager_outbox', '');
    RETURN NULL;
END;
$$ LANGUAGE plpgsql
"""
NOTIFY_TRIGGER = """
CREATE TRIGGER outbox_events_notify AFTER INSERT ON outbox_events
FOR EACH STATEMENT EXECUTE FUNCTION taskmanager_outbox_notify()
"""


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS outbox_events_notify ON outbox_events")
        op.execute("DROP FUNCTION IF EXISTS taskmanager_outbox_notify()")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(NOTIFY_FUNCTION)
        op.execute(NOTIFY_TRIGGER)
