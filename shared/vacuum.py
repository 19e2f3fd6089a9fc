"""Keeps PostgreSQL's task table vacuumed while claims turn queued rows over.

A claim leaves the queued row's entry in the claim index behind, dead, at the front of the
queue, and every later claim walks past it until VACUUM removes it. Autovacuum visits a
database at most once a minute (`autovacuum_naptime`), and never where it is off: at 2,000
claims/s the front of the queue then holds over 100,000 dead entries, and the claim
statement ran a third slower after 60 s than at the start (3,080/s against 4,630/s on 8
connections). So the API process checks the table every TASKMAN_VACUUM_INTERVAL_SECONDS and,
once TASKMAN_VACUUM_MIN_DEAD_ROWS rows died since the last vacuum, vacuums it itself (about
0.15 s on a table of 700,000 tasks: the visibility map lets it skip the heap pages nothing
changed on, though each index is still read through). One process at a time (an advisory
lock); SKIP_LOCKED leaves the table to an autovacuum already at it.

VACUUM does not fail when it cannot do its work: it skips the table with a WARNING, when the
database user neither owns the table nor the database, or when another vacuum holds the
table. So a vacuum counts when the table's `vacuum_count` went up; when it did not, the
warning tells why (SQLSTATE 55P03: another vacuum holds the table; anything else: no right
to vacuum it, and the process says so once and stops trying). Other warnings, such as an old
transaction holding back the cleanup, come with vacuums that did run.
"""

from __future__ import annotations

import logging
from typing import Any

import asyncpg

log = logging.getLogger("taskmanager.vacuum")

TABLE = "tasks"
# pg_try_advisory_lock key: "tmvacuum" as a 64-bit integer.
LOCK_KEY = int.from_bytes(b"tmvacuum", "big") - 2**63

_STATS = "SELECT n_dead_tup, vacuum_count FROM pg_stat_user_tables WHERE relid = $1::regclass"
_LOCK_NOT_AVAILABLE = "55P03"


class TaskVacuum:
    """`run_once()` from a periodic loop; `close()` when the process stops."""

    def __init__(self, dsn: str, min_dead_rows: int) -> None:
        self.dsn = dsn
        self.min_dead_rows = min_dead_rows
        self.vacuums = 0
        self.permitted = True
        self._connection: Any = None
        self._skipped: list[Any] = []

    async def _connect(self) -> Any:
        if self._connection is None or self._connection.is_closed():
            # The skip warnings must reach this client whatever the role's settings say.
            self._connection = await asyncpg.connect(
                self.dsn, server_settings={"client_min_messages": "warning"}
            )
            self._connection.add_log_listener(self._on_notice)
        return self._connection

    def _on_notice(self, _connection: Any, message: Any) -> None:
        if message.severity_en == "WARNING":
            self._skipped.append(message)

    async def _stats(self, conn: Any) -> tuple[int, int]:
        """(dead rows, vacuums so far) of the task table."""
        row = await conn.fetchrow(_STATS, TABLE)
        return (int(row[0] or 0), int(row[1] or 0)) if row is not None else (0, 0)

    async def run_once(self) -> bool:
        """Vacuum the task table if enough of its rows died; whether it did."""
        if not self.permitted:
            return False
        try:
            conn = await self._connect()
            if (await self._stats(conn))[0] < self.min_dead_rows:
                return False
            if not await conn.fetchval("SELECT pg_try_advisory_lock($1)", LOCK_KEY):
                return False  # another process is at it
            try:
                # Read again under the lock: another process may have vacuumed meanwhile.
                dead, before = await self._stats(conn)
                if dead < self.min_dead_rows:
                    return False
                self._skipped.clear()
                # PARALLEL 0: one process. A chore beside the claims it serves, it should take
                # one core, not start workers that take every core of a small database host.
                await conn.execute(f"VACUUM (SKIP_LOCKED, PARALLEL 0) {TABLE}")
                after = (await self._stats(conn))[1]
            finally:
                await conn.execute("SELECT pg_advisory_unlock($1)", LOCK_KEY)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
            await self.close()  # a new connection next time
            raise
        if after > before:
            self.vacuums += 1
            log.debug("vacuumed %s: %s dead rows", TABLE, dead)
            return True
        if self._skipped:
            await self._on_skipped(self._skipped[0])
        return False

    async def _on_skipped(self, notice: Any) -> None:
        if notice.sqlstate == _LOCK_NOT_AVAILABLE:
            log.debug("%s is being vacuumed by another: %s", TABLE, notice.message)
            return
        self.permitted = False
        await self.close()
        log.warning(
            "cannot vacuum %s (%s); this process stops trying. Give the table to the "
            "database user TaskManager connects as, or rely on autovacuum "
            "(TASKMAN_VACUUM_INTERVAL_SECONDS=0 turns this off).",
            TABLE,
            notice.message,
        )

    async def close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None and not connection.is_closed():
            connection.terminate()
