"""The callback receiver of the delivery benchmark: answers 200, remembers when each arrived.

Run by uvicorn in a process of its own, so receiving never competes with the load generator.
`GET /stats` returns `[[webhook-id, unix time], ...]`.
"""

from __future__ import annotations

import time

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

_received: list[tuple[str, float]] = []


async def receive(request: Request) -> Response:
    await request.body()
    _received.append((request.headers.get("webhook-id", ""), time.time()))
    return Response(status_code=204)


async def stats(_: Request) -> JSONResponse:
    return JSONResponse(_received)


app = Starlette(
    routes=[
        Route("/stats", stats, methods=["GET"]),
        Route("/cb/{n}", receive, methods=["PUT", "POST"]),
    ]
)
