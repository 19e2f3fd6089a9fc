"""The app uvicorn serves, composed with what runs beside it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from api.app import create_app
from shared.periodic import periodic
from shared.settings import get_settings
from shared.taskevents import sweep_expired_leases
from worker.service import Worker


@asynccontextmanager
async def lease_sweeper(app: FastAPI) -> AsyncIterator[None]:
    """Returns tasks whose lease ran out to the queue, even when nobody touches them."""
    interval = app.state.settings.sweep_interval_seconds

    async def sweep() -> None:
        if await sweep_expired_leases(app.state.sessions):
            app.state.outbox_notifier.touch()

    async with periodic("lease-sweeper", interval, sweep):
        yield


@asynccontextmanager
async def embedded_delivery(app: FastAPI) -> AsyncIterator[None]:
    """Without a broker, this process turns its events into callbacks and webhooks itself,
    with the worker's own code; with one, `taskmanager worker` does (the API never publishes)."""
    settings = app.state.settings
    if settings.amqp_url:
        yield
        return
    worker = Worker(settings, engine=app.state.engine, broker=False, sweep=False)
    await worker.start()
    try:
        yield
    finally:
        await worker.stop()


def app_factory() -> FastAPI:
    return create_app(get_settings(), services=[lease_sweeper, embedded_delivery])
