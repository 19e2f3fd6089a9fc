"""The app uvicorn serves, composed with what runs beside it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from api.app import create_app
from shared.periodic import periodic
from shared.settings import get_settings
from shared.taskevents import sweep_expired_leases


@asynccontextmanager
async def lease_sweeper(app: FastAPI) -> AsyncIterator[None]:
    """Returns tasks whose lease ran out to the queue, even when nobody touches them."""
    interval = app.state.settings.sweep_interval_seconds
    async with periodic(
        "lease-sweeper", interval, lambda: sweep_expired_leases(app.state.sessions)
    ):
        yield


def app_factory() -> FastAPI:
    return create_app(get_settings(), services=[lease_sweeper])
