"""Waking the relays after commits that wrote outbox rows (PostgreSQL NOTIFY, coalesced).

A transaction that runs NOTIFY takes PostgreSQL's notification-queue lock at commit and
holds it through its commit record's flush, so a NOTIFY inside every claim or status change
would make those commits queue behind one another (a third of the claim rate at 8 clients,
more at 64). Instead the process that committed calls `touch()`, and one NOTIFY of its own,
sent after those commits, wakes the relays: at most one per `interval` seconds however many
commits there were. A NOTIFY that never comes (this process dies between its commit and the
NOTIFY) costs only time: the relays also poll (worker/wakeup.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from sqlalchemy.engine import make_url

log = logging.getLogger("taskmanager.events")

CHANNEL = "taskmanager_outbox"
INTERVAL_SECONDS = 0.02


def postgres_dsn(database_url: str) -> str | None:
    """The asyncpg DSN of a PostgreSQL database URL; None for other databases."""
    parsed = make_url(database_url)
    if parsed.get_backend_name() != "postgresql":
        return None
    return parsed.set(drivername="postgresql").render_as_string(hide_password=False)


class OutboxNotifier:
    """`touch()` after a commit that wrote outbox rows; `close()` when the process stops.

    On databases other than PostgreSQL (no LISTEN/NOTIFY) it does nothing: relays poll there.
    """

    def __init__(self, database_url: str, interval: float = INTERVAL_SECONDS) -> None:
        self.dsn = postgres_dsn(database_url)
        self.interval = interval
        self.sent = 0
        self._pending = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._connection: Any = None
        self._closed = False

    def touch(self) -> None:
        """Cheap and synchronous: the NOTIFY goes out from a background task."""
        if self.dsn is None or self._closed:
            return
        self._pending.set()
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(), name="outbox-notifier")

    async def _run(self) -> None:
        while True:
            await self._pending.wait()
            self._pending.clear()
            try:
                await self._notify()
            except Exception as exc:
                log.warning("cannot NOTIFY the relays (%s); they poll meanwhile", exc)
                await self._drop_connection()
                await asyncio.sleep(1.0)
            await asyncio.sleep(self.interval)

    async def _notify(self) -> None:
        import asyncpg

        if self._connection is None or self._connection.is_closed():
            self._connection = await asyncpg.connect(self.dsn)
        await self._connection.execute(f"SELECT pg_notify('{CHANNEL}', '')")
        self.sent += 1

    async def _drop_connection(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            with contextlib.suppress(Exception):
                await connection.close(timeout=2)

    async def close(self) -> None:
        """Sends what is pending, then stops."""
        self._closed = True
        task, self._task = self._task, None
        if task is not None:
            if self._pending.is_set():
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(self._notify(), 2)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._drop_connection()
