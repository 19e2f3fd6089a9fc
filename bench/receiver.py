"""The callback receiver of the delivery benchmark: answers 204, remembers when each arrived.

Run by uvicorn in a process of its own, so receiving never competes with the load generator.
`GET /stats?since=K` returns the receipts from the K-th on (all without `since`), each as
`[webhook-id, n, unix time]`, n being the number in the callback's path (`/cb/{n}`), so a
benchmark can poll for what is new without reading everything again.
"""

from __future__ import annotations

import time

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

_received: list[tuple[str, int, float]] = []


async def receive(request: Request) -> Response:
    await request.body()
    n = int(request.path_params["n"])
    _received.append((request.headers.get("webhook-id", ""), n, time.time()))
    return Response(status_code=204)


async def stats(request: Request) -> JSONResponse:
    since = int(request.query_params.get("since", "0"))
    return JSONResponse(_received[since:])


app = Starlette(
    routes=[
        Route("/stats", stats, methods=["GET"]),
        Route("/cb/{n:int}", receive, methods=["PUT", "POST"]),
    ]
)
