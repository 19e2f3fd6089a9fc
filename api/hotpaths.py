"""The two requests readers' clients send in a tight loop, served beside FastAPI's routing.

`POST /api/v1/tasks/claim` and a status-only `PUT /api/v1/tasks/{id}` are answered here,
as pure ASGI, when their fast paths apply (api/tasks/claim_raw.py, the status fast paths):
FastAPI's routing, dependency resolution and response handling cost about as much CPU as
the rest of such a request. Whatever the fast path does not take (filters by reference, a
body with other fields, a Basic password not verified yet, any request it cannot parse) goes
on to the application unchanged, body included, so every answer and error stays the one
the documented route gives. The routes stay declared in FastAPI for the OpenAPI document.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Awaitable, Callable

import asyncpg
import pymysql
import sqlalchemy.exc
from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import APIError, problem_response
from api.refs import MAX_ID
from api.tasks import claim_raw
from api.tasks.router import fast_status_change
from api.tasks.schemas import ClaimRequest, TaskRead

log = logging.getLogger("taskmanager.api")

CLAIM_PATH = "/api/v1/tasks/claim"
TASK_PREFIX = "/api/v1/tasks/"
JSON_HEADERS = [(b"content-type", b"application/json")]
# A database that cannot be reached is a 503 to retry, as on the generic path.
UNAVAILABLE = (
    asyncpg.PostgresConnectionError,
    # The server shut the connection (57P01 and its kin), or what that left the client in.
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.InternalClientError,
    OSError,
    # MariaDB: lost or refused connections, lock wait timeouts, deadlocks.
    pymysql.err.OperationalError,
    # SQLite: a writer lock not had within the busy timeout, a disk error.
    sqlite3.OperationalError,
    # No pooled connection free within the pool's timeout.
    sqlalchemy.exc.TimeoutError,
    # The same through the engine (a Basic password verified before the claim), as the
    # application's handler answers it (api/errors.py).
    sqlalchemy.exc.OperationalError,
    # No fast-path connection free within TASKMAN_HOT_POOL_TIMEOUT_SECONDS.
    TimeoutError,
)


class _Declined:
    """A fast path's answer when the request is not for it."""


DECLINED = _Declined()
Handler = Callable[[Request], Awaitable[TaskRead | _Declined | None]]


def _route_path(scope: Scope) -> str:
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    if root and path.startswith(root):
        return path[len(root) :]
    return path


class HotPathMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method = scope["method"]
        handler: Handler | None = None
        if method == "POST" or method == "PUT":
            path = _route_path(scope)
            if method == "POST" and path == CLAIM_PATH:
                handler = _claim
            elif method == "PUT" and path.startswith(TASK_PREFIX):
                digits = path[len(TASK_PREFIX) :]
                if digits.isascii() and digits.isdigit() and 0 < int(digits) <= MAX_ID:
                    handler = _status_change
        if handler is None:
            await self.app(scope, receive, send)
            return
        body, more = await _read_body(receive)
        if more is not None:
            return  # the client went away before its request arrived whole
        replay = _replay(body, receive)
        request = Request(scope, replay)
        try:
            answer = await handler(request)
        except Exception as exc:
            await _error(exc)(scope, replay, send)
            return
        if isinstance(answer, _Declined):
            # Not for the fast path: the application answers, from the same body.
            await self.app(scope, _replay(body, receive), send)
            return
        if answer is None:
            await send({"type": "http.response.start", "status": 204, "headers": []})
            await send({"type": "http.response.body", "body": b""})
            return
        content = answer.__pydantic_serializer__.to_json(answer)
        headers = [*JSON_HEADERS, (b"content-length", str(len(content)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": content})


async def _read_body(receive: Receive) -> tuple[bytes, Message | None]:
    """The whole body; and a message other than a body part, should one come instead."""
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b"".join(chunks), message
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks), None


def _replay(body: bytes, receive: Receive) -> Receive:
    """`receive` with the body read already given again, whole, first."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


def _error(exc: Exception) -> Response:
    """The problem details the application's error handlers give for `exc`."""
    if isinstance(exc, APIError):
        return problem_response(exc.status_code, exc.detail, headers=exc.headers, **exc.extra)
    if isinstance(exc, UNAVAILABLE):
        log.warning("database unavailable: %s", exc)
        return problem_response(
            503, "The database is busy or unavailable; retry", headers={"Retry-After": "1"}
        )
    log.error("unhandled error", exc_info=exc)
    return problem_response(500, "Internal server error")


async def _claim(request: Request) -> TaskRead | _Declined | None:
    body = await request.body()
    if body.strip():
        if not request.headers.get("content-type", "").startswith("application/json"):
            return DECLINED
        try:
            data = ClaimRequest.model_validate_json(body)
        except ValidationError:
            return DECLINED
    else:
        data = ClaimRequest()
    if not claim_raw.applies(request.app, data):
        return DECLINED
    return await claim_raw.claim(request, data)


async def _status_change(request: Request) -> TaskRead | _Declined:
    task_id = int(_route_path(request.scope)[len(TASK_PREFIX) :])
    done = await fast_status_change(request, task_id, request.headers.get("if-match"))
    return DECLINED if done is None else done
