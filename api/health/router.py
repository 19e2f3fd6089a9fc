"""Probes and version discovery, outside /api/v1 (6.x clients discover the API here)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy import text

from shared import __version__

router = APIRouter(prefix="/-", tags=["health"])


class Versions(BaseModel):
    version: str
    api_versions: dict[str, str]


@router.get("/healthy", summary="Liveness probe")
async def healthy() -> dict[str, str]:
    return {"status": "healthy"}


@router.get(
    "/ready",
    summary="Readiness probe: the database (and the broker, when configured) answers",
    responses={503: {"description": "A dependency does not answer"}},
)
async def ready(request: Request) -> JSONResponse:
    checks: dict[str, Any] = {}
    try:
        async with request.app.state.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except Exception as exc:
        checks["database"] = f"error: {type(exc).__name__}"
    probe = getattr(request.app.state, "broker_probe", None)
    if probe is not None:
        checks["broker"] = "ok" if await probe() else "error"
    ok = all(v == "ok" for v in checks.values())
    return JSONResponse({"status": "ready" if ok else "unavailable", **checks}, 200 if ok else 503)


@router.get("/versions", summary="Package version and the API versions it serves")
async def versions() -> Versions:
    return Versions(version=__version__, api_versions={"1.0": "/api/v1"})
