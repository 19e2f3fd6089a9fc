"""The API process vacuums PostgreSQL's task table once claims left enough dead rows."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest
from fastapi import FastAPI

from cli.migrate import upgrade
from cli.serve import task_vacuum
from shared.events.notify import postgres_dsn
from shared.vacuum import LOCK_KEY, TaskVacuum
from tests import backends
from tests.conftest import make_settings

SEED = """
WITH template AS (INSERT INTO task_templates (label, content) VALUES ('t', '{}') RETURNING id)
INSERT INTO tasks (project, template_id, content, status, priority, lock_version, share_hash,
                   event_sequence, create_time, update_time)
SELECT 'p', template.id, '{}', 'queued', 0, 0, 0.5, 0, now(), now()
FROM template, generate_series(1, 100)
"""


@pytest.fixture
async def database(tmp_path: Path) -> AsyncIterator[backends.TestDatabase]:
    db = await backends.create_database("postgresql", str(tmp_path))
    await asyncio.to_thread(upgrade, db.url)
    try:
        yield db
    finally:
        await db.drop()


@pytest.fixture
async def dsn(database: backends.TestDatabase) -> str:
    url = postgres_dsn(database.url)
    assert url is not None
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(SEED)
    finally:
        await conn.close()
    return url


async def _claim_all(dsn: str) -> None:
    """Lock every task, as claims do: each queued row version dies."""
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("UPDATE tasks SET status = 'locked', lock_version = lock_version + 1")
        await conn.execute("SELECT pg_stat_force_next_flush()")
        await conn.execute("SELECT 1")  # the flush happens at the end of a transaction
    finally:
        await conn.close()


async def _table_stats(dsn: str) -> tuple[int, int]:
    """(vacuum count, dead rows) of the task table."""
    conn = await asyncpg.connect(dsn)
    try:
        row = await conn.fetchrow(
            "SELECT vacuum_count, n_dead_tup FROM pg_stat_user_tables WHERE relname = 'tasks'"
        )
    finally:
        await conn.close()
    assert row is not None
    return int(row[0]), int(row[1])


async def test_the_task_table_is_vacuumed_once_enough_rows_died(dsn: str) -> None:
    vacuum = TaskVacuum(dsn, min_dead_rows=50)
    try:
        assert not await vacuum.run_once()  # nothing died yet
        await _claim_all(dsn)
        assert (await _table_stats(dsn))[1] >= 100
        assert await vacuum.run_once()
        count, dead = await _table_stats(dsn)
        assert count == 1
        assert dead == 0
        assert not await vacuum.run_once()
    finally:
        await vacuum.close()


async def test_fewer_dead_rows_than_the_threshold_are_left_to_autovacuum(dsn: str) -> None:
    vacuum = TaskVacuum(dsn, min_dead_rows=1000)
    try:
        await _claim_all(dsn)
        assert not await vacuum.run_once()
        assert (await _table_stats(dsn))[0] == 0
    finally:
        await vacuum.close()


async def test_one_process_vacuums_at_a_time(dsn: str) -> None:
    other = await asyncpg.connect(dsn)
    vacuum = TaskVacuum(dsn, min_dead_rows=1)
    try:
        assert await other.fetchval("SELECT pg_try_advisory_lock($1)", LOCK_KEY)
        await _claim_all(dsn)
        assert not await vacuum.run_once()
        await other.execute("SELECT pg_advisory_unlock($1)", LOCK_KEY)
        assert await vacuum.run_once()
    finally:
        await vacuum.close()
        await other.close()


async def test_serve_vacuums_in_the_background(
    database: backends.TestDatabase, dsn: str, tmp_path: Path
) -> None:
    settings = make_settings(
        database.url, str(tmp_path), vacuum_interval_seconds=0.05, vacuum_min_dead_rows=10
    )
    app = FastAPI()
    app.state.settings = settings
    async with task_vacuum(app):
        await _claim_all(dsn)
        for _ in range(100):
            if (await _table_stats(dsn))[0] >= 1:
                break
            await asyncio.sleep(0.05)
    assert (await _table_stats(dsn))[0] >= 1


async def test_serve_does_not_vacuum_when_turned_off(
    database: backends.TestDatabase, dsn: str, tmp_path: Path
) -> None:
    settings = make_settings(
        database.url, str(tmp_path), vacuum_interval_seconds=0, vacuum_min_dead_rows=10
    )
    app = FastAPI()
    app.state.settings = settings
    async with task_vacuum(app):
        await _claim_all(dsn)
        await asyncio.sleep(0.3)
    assert (await _table_stats(dsn))[0] == 0


async def test_a_user_without_the_right_to_vacuum_is_told_once_and_stops(
    dsn: str, caplog: pytest.LogCaptureFixture
) -> None:
    """VACUUM only warns when it skips a table it may not vacuum; that is not a vacuum."""
    role = f"tm_not_owner_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(dsn)
    await admin.execute(f"CREATE ROLE {role} LOGIN")
    vacuum = TaskVacuum(_as_role(dsn, role), min_dead_rows=1)
    try:
        await _claim_all(dsn)
        with caplog.at_level(logging.WARNING, logger="taskmanager.vacuum"):
            assert not await vacuum.run_once()
            assert not await vacuum.run_once()
        assert not vacuum.permitted
        assert vacuum._connection is None  # no connection kept for nothing
        assert vacuum.vacuums == 0
        warnings = [r for r in caplog.records if r.name == "taskmanager.vacuum"]
        assert len(warnings) == 1
        assert "cannot vacuum tasks" in warnings[0].getMessage()
        assert (await _table_stats(dsn))[0] == 0
    finally:
        await vacuum.close()
        await admin.execute(f"DROP ROLE {role}")
        await admin.close()


async def test_a_table_another_vacuum_holds_is_not_counted_and_tried_again(dsn: str) -> None:
    other = await asyncpg.connect(dsn)
    vacuum = TaskVacuum(dsn, min_dead_rows=1)
    try:
        await _claim_all(dsn)
        async with other.transaction():
            await other.execute("LOCK TABLE tasks IN SHARE UPDATE EXCLUSIVE MODE")
            assert not await vacuum.run_once()
        assert vacuum.permitted
        assert vacuum.vacuums == 0
        assert await vacuum.run_once()
        assert vacuum.vacuums == 1
    finally:
        await vacuum.close()
        await other.close()


async def test_dead_rows_are_read_again_once_the_lock_is_held(
    dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another process may vacuum between the first look and the advisory lock."""
    vacuum = TaskVacuum(dsn, min_dead_rows=10)
    counts = iter([(100, 0), (0, 0)])

    async def stats(_conn: object) -> tuple[int, int]:
        return next(counts)

    monkeypatch.setattr(vacuum, "_stats", stats)
    try:
        assert not await vacuum.run_once()
        assert (await _table_stats(dsn))[0] == 0
    finally:
        await vacuum.close()


class _WarningDuringVacuum(list[Any]):
    """A warning that arrives with a vacuum that ran, as PostgreSQL's "oldest xmin is far in
    the past" does (SQLSTATE 01000, like the permission one)."""

    def clear(self) -> None:
        super().clear()
        self.append(SimpleNamespace(sqlstate="01000", message="oldest xmin is far in the past"))


async def test_a_warning_from_a_vacuum_that_ran_does_not_stop_vacuuming(dsn: str) -> None:
    vacuum = TaskVacuum(dsn, min_dead_rows=1)
    vacuum._skipped = _WarningDuringVacuum()
    try:
        await _claim_all(dsn)
        assert await vacuum.run_once()
        assert vacuum.permitted
        assert vacuum.vacuums == 1
        assert (await _table_stats(dsn))[0] == 1
    finally:
        await vacuum.close()


def _as_role(dsn: str, role: str) -> str:
    parts = urlsplit(dsn)
    host = parts.hostname or "127.0.0.1"
    netloc = f"{role}@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))
