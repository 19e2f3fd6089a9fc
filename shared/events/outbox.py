"""Append events to the outbox in the caller's transaction (never commits)."""

from __future__ import annotations

import json
import uuid
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from shared.models import OutboxEvent, utcnow

# The events that make a callback: their rows keep the callback body.
CALLBACK_EVENTS = frozenset({"task.status.done", "taskgroup.done"})


def event_values(
    event_type: str,
    *,
    actor: str | None,
    snapshot: dict[str, Any],
    task_id: int | None = None,
    taskgroup_id: int | None = None,
    sequence: int = 0,
    callback_content: str | None = None,
) -> dict[str, Any]:
    """The column values of one outbox row (its payload is the published envelope).

    `callback_content` is the subject's callback body; a done event keeps it (the callback
    it makes sends it), other events do not need it.
    """
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
        "callback_content": callback_content if event_type in CALLBACK_EVENTS else None,
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
    callback_content: str | None = None,
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
            callback_content=callback_content,
        )
    )
    session.add(row)
    return row
