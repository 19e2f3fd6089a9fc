"""The claim as one SQL statement, and that statement in a tight asyncpg loop.

This is the floor under every HTTP figure: what PostgreSQL itself does per claim, with no
HTTP, no authentication, no ORM and no outbox event. Our endpoint runs the same UPDATE ...
WHERE id = (SELECT ... FOR UPDATE SKIP LOCKED) RETURNING (api/tasks/claim.py), plus the
pull-weight rule of api/tasks/visibility.py, the `task.locked` outbox row and the read of
the task's links; the loop and bench/bare.py run only this statement.
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass
from typing import Any

import asyncpg

from bench.cpu import CpuMeter, machine_busy_seconds

# Timestamps are stored as naive UTC (shared/models/base.py), hence timezone('utc', now()).
CLAIM_SQL = """
UPDATE tasks
SET status = 'locked',
    lock_holder_id = $1,
    lock_expires_at = timezone('utc', now()) + interval '1 hour',
    lock_version = lock_version + 1,
    event_sequence = event_sequence + 1,
    update_time = timezone('utc', now())
WHERE id = (
    SELECT t.id FROM tasks t
    WHERE t.status = 'queued'
      AND EXISTS (
        SELECT 1 FROM task_group_links l
        JOIN group_members m ON m.group_id = l.group_id
        WHERE l.task_id = t.id AND m.user_id = $1
      )
    ORDER BY t.priority DESC, t.id
    LIMIT 1
    FOR UPDATE SKIP LOCKED
)
RETURNING *
"""


@dataclass(frozen=True)
class LoopResult:
    connections: int
    seconds: float
    claims: int
    empty: int
    p50_ms: float
    p99_ms: float
    # Shares of all cores: this (the client) process, its PostgreSQL backends, everything.
    client_cpu: float
    database_cpu: float
    machine_cpu: float

    @property
    def claims_per_second(self) -> float:
        return self.claims / self.seconds if self.seconds > 0 else 0.0


async def _claimer(
    conn: Any, user_id: int, deadline: float, latencies: list[float], empty: list[int]
) -> None:
    statement = await conn.prepare(CLAIM_SQL)
    while time.monotonic() < deadline:
        started = time.perf_counter()
        row = await statement.fetchrow(user_id)
        if row is None:
            empty.append(1)
            continue
        latencies.append(time.perf_counter() - started)


async def claim_loop(dsn: str, user_id: int, connections: int, seconds: float) -> LoopResult:
    """Run CLAIM_SQL back to back on `connections` connections for `seconds`."""
    conns = [await asyncpg.connect(dsn) for _ in range(connections)]
    latencies: list[float] = []
    empty: list[int] = []
    try:
        client = CpuMeter([os.getpid()])
        database = CpuMeter([c.get_server_pid() for c in conns])
        client.start()
        database.start()
        busy_before, total_before = machine_busy_seconds()
        started = time.monotonic()
        await asyncio.gather(
            *(_claimer(c, user_id, started + seconds, latencies, empty) for c in conns)
        )
        elapsed = time.monotonic() - started
        client.sample()
        database.sample()
        busy, total = machine_busy_seconds()
    finally:
        for conn in conns:
            await conn.close()
    latencies.sort()

    def percentile(fraction: float) -> float:
        if not latencies:
            return 0.0
        return latencies[min(len(latencies) - 1, int(fraction * len(latencies)))] * 1000

    return LoopResult(
        connections=connections,
        seconds=elapsed,
        claims=len(latencies),
        empty=len(empty),
        p50_ms=percentile(0.5),
        p99_ms=percentile(0.99),
        client_cpu=client.share(elapsed),
        database_cpu=database.share(elapsed),
        machine_cpu=(busy - busy_before) / (total - total_before) if total > total_before else 0,
    )
