"""Waking the relay when the outbox gets rows: LISTEN/NOTIFY on PostgreSQL, else a short poll."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from shared.events.notify import CHANNEL, postgres_dsn

log = logging.getLogger("taskmanager.relay")


class Wakeup:
    """`wait()` returns when a commit inserted outbox rows, or after `poll_seconds` anyway.

    The notification comes from the API processes after their commits
    (shared/events/notify.py). The poll covers what a notification cannot: rows written while
    the listening connection was down, a process that died before it notified, and
    databases without LISTEN.
    """

    def __init__(
        self,
        url: str,
        poll_seconds: float,
        listen_poll_seconds: float = 2.0,
        gather_seconds: float = 0.05,
    ) -> None:
        self._dsn = postgres_dsn(url)
        self._poll = poll_seconds
        self._gather = gather_seconds
        self._listen_poll = listen_poll_seconds
        self._event = asyncio.Event()
        self._connection: Any = None
        self._next_try = 0.0

    @property
    def listening(self) -> bool:
        return self._connection is not None and not self._connection.is_closed()

    async def _listen(self) -> None:
        import asyncpg

        loop = asyncio.get_running_loop()
        if self._dsn is None or self.listening or loop.time() < self._next_try:
            return
        self._next_try = loop.time() + 5.0
        try:
            self._connection = await asyncpg.connect(self._dsn)
            await self._connection.add_listener(CHANNEL, lambda *_: self._event.set())
        except Exception as exc:
            log.warning("cannot LISTEN for outbox rows (%s); polling meanwhile", exc)
            self._connection = None

    def wake(self) -> None:
        """Rows were written in this process (the worker's lease sweeper)."""
        self._event.set()

    async def wait(self) -> None:
        await self._listen()
        timeout = self._listen_poll if self.listening else self._poll
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._event.wait(), timeout)
            # Under load every commit notifies: gather a few before taking the next batch.
            await asyncio.sleep(self._gather)
        self._event.clear()

    async def close(self) -> None:
        if self._connection is not None:
            with contextlib.suppress(Exception):
                await self._connection.close()
            self._connection = None
