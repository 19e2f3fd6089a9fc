"""`taskmanager serve`'s app, made to die right after a commit and before its response.

The N-th commit that marks a task done (TASKMAN_TEST_CRASH_AT_DONE=N) ends the process with
os._exit inside the commit's after-commit hook: the change and its outbox row are committed,
the client never hears back. Served by uvicorn exactly as `taskmanager serve` serves its app.
"""

from __future__ import annotations

import os
from typing import Any

from fastapi import FastAPI
from sqlalchemy import event
from sqlalchemy.orm import Session

from api.tasks import status_pg, status_sqlite
from cli.serve import app_factory as serve_app_factory
from shared.models import OutboxEvent

CRASH_AT = int(os.environ.get("TASKMAN_TEST_CRASH_AT_DONE", "0"))
_committed_done = 0


@event.listens_for(Session, "after_flush")
def _note_done(session: Session, _context: Any) -> None:
    if any(isinstance(o, OutboxEvent) and o.type == "task.status.done" for o in session.new):
        session.info["marks_done"] = True


@event.listens_for(Session, "after_commit")
def _crash(session: Session) -> None:
    global _committed_done
    if session.info.pop("marks_done", False):
        _committed_done += 1
        if _committed_done == CRASH_AT:
            os._exit(9)


def _crash_after(original: Any) -> Any:
    """The status change's hot path (api/tasks/status_pg.py, status_sqlite.py) commits
    without a Session: count its answers that end with the task done (each task is marked
    done once here, so each such answer is a commit that marked it done)."""

    async def set_status(*args: Any) -> Any:
        global _committed_done
        result = await original(*args)
        if result is not None and result.status == "done":
            _committed_done += 1
            if _committed_done == CRASH_AT:
                os._exit(9)
        return result

    return set_status


status_pg.set_status = _crash_after(status_pg.set_status)
status_sqlite.set_status = _crash_after(status_sqlite.set_status)


def app_factory() -> FastAPI:
    return serve_app_factory()
