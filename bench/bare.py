"""The bare reference endpoint: FastAPI, an asyncpg pool, the claim SQL, the row as JSON.

Nothing else: no authentication, no ORM, no outbox event, no response model. Served by
uvicorn with as many workers as our service, it shows what this machine can do over HTTP
with FastAPI, so our figure can be read as a ratio to it. Configured by the environment:
BENCH_BARE_DSN (asyncpg DSN), BENCH_BARE_USER_ID (the reader), BENCH_BARE_POOL (size).
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
from fastapi import FastAPI, Request, Response

from bench.claim import CLAIM_SQL


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    size = int(os.environ.get("BENCH_BARE_POOL", "15"))
    app.state.user_id = int(os.environ["BENCH_BARE_USER_ID"])
    app.state.pool = await asyncpg.create_pool(
        os.environ["BENCH_BARE_DSN"], min_size=size, max_size=size
    )
    try:
        yield
    finally:
        await app.state.pool.close()


app = FastAPI(lifespan=lifespan, openapi_url=None, docs_url=None, redoc_url=None)


@app.post("/api/v1/tasks/claim")
async def claim(request: Request) -> Response:
    async with request.app.state.pool.acquire() as conn:
        row = await conn.fetchrow(CLAIM_SQL, request.app.state.user_id)
    if row is None:
        return Response(status_code=204)
    return Response(json.dumps(dict(row), default=str), media_type="application/json")
