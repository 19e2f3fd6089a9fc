"""Append events to the outbox in the caller's transaction (never commits)."""

from __future__ import annotations

import json
import uuid
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from shared.models import OutboxEvent, utcnow


def event_values(
    event_type: str,
    *,
    actor: str | None,
    snapshot: dict[str, Any],
    task_id: int | None = None,
    taskgroup_id: int | None = None,
    sequence: int = 0,
) -> dict[str, Any]:
    """The column values of one outbox row (its payload is the published envelope)."""
    event_id = str(uuid.uuid4())
    occurred = utcnow()
    envelope = {
        "id": event_id,
        "type": event_type,
        "occurred_at": occurred.isoformat(),
        "sequence": sequence,
        "actor": actor,
        "task" if task_id is not None else "taskgroup": snapshot,
    }
    return {
        "event_id": event_id,
        "type": event_type,
        "task_id": task_id,
        "taskgroup_id": taskgroup_id,
        "sequence": sequence,
        "payload": json.dumps(envelope, separators=(",", ":")),
        "occurred_at": occurred,
    }


def add_event(
    session: AsyncSession,
    event_type: str,
    *,
    actor: str | None,
    snapshot: dict[str, Any],
    task_id: int | None = None,
    taskgroup_id: int | None = None,
    sequence: int = 0,
) -> OutboxEvent:
    """Stage one event row; it is written with the caller's change, or not at all."""
    row = OutboxEvent(
        **event_values(
            event_type,
            actor=actor,
            snapshot=snapshot,
            task_id=task_id,
            taskgroup_id=taskgroup_id,
            sequence=sequence,
        )
    )
    session.add(row)
    return row
