"""The request's commit happens before the response is sent: a failed commit is never a 201."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncSession

PROBLEM_JSON = "application/problem+json"


def fail_next_commit(monkeypatch: pytest.MonkeyPatch, error: BaseException) -> list[int]:
    """Make the next AsyncSession.commit raise `error`; later commits work. Returns a counter."""
    original: Callable[[AsyncSession], Any] = AsyncSession.commit
    calls: list[int] = []

    async def commit(self: AsyncSession) -> None:
        calls.append(1)
        if len(calls) == 1:
            raise error
        await original(self)

    monkeypatch.setattr(AsyncSession, "commit", commit)
    return calls


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (OperationalError("COMMIT", None, Exception("server closed the connection")), 503),
        (RuntimeError("commit failed"), 500),
    ],
    ids=["database-gone", "unexpected"],
)
async def test_failed_commit_reaches_the_client_and_stores_nothing(
    admin: httpx.AsyncClient,
    monkeypatch: pytest.MonkeyPatch,
    error: BaseException,
    status: int,
) -> None:
    calls = fail_next_commit(monkeypatch, error)

    response = await admin.post("/api/v1/task_templates", json={"label": "lost", "content": "a: 1"})

    assert len(calls) == 1, "the request did not commit through AsyncSession.commit"
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM_JSON
    body = response.json()
    assert body["status"] == status
    assert "Traceback" not in response.text
    assert "commit failed" not in response.text  # no internals leak to the client
    if status == 503:
        assert response.headers["retry-after"] == "1"

    # Nothing was stored, and the next request works normally.
    assert (await admin.get("/api/v1/task_templates")).json() == {"task_templates": []}
    assert (await admin.get("/api/v1/task_templates/lost")).status_code == 404
    retried = await admin.post("/api/v1/task_templates", json={"label": "lost", "content": "a: 1"})
    assert retried.status_code == 201, retried.text
    assert (await admin.get("/api/v1/task_templates/lost")).status_code == 200


async def test_a_failed_request_commits_nothing(
    admin: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = fail_next_commit(monkeypatch, RuntimeError("must not be reached"))
    response = await admin.put("/api/v1/task_templates/none", json={"content": "a: 2"})
    assert response.status_code == 404
    assert calls == []
