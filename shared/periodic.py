"""Run a coroutine function every few seconds for the lifetime of a process."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

log = logging.getLogger("taskmanager.periodic")


async def _loop(name: str, interval: float, job: Callable[[], Awaitable[Any]]) -> None:
    failing = False
    while True:
        try:
            await job()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            # One traceback per outage: a database that is down for an hour would otherwise
            # log one every interval.
            if failing:
                log.warning("%s failed again: %r", name, exc)
            else:
                log.exception("%s failed; trying again every %.0f s", name, interval)
            failing = True
        else:
            if failing:
                log.info("%s works again", name)
            failing = False
        await asyncio.sleep(interval)


@asynccontextmanager
async def periodic(
    name: str, interval: float, job: Callable[[], Awaitable[Any]]
) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(_loop(name, interval, job), name=name)
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
