"""SQLite's hot paths while another process holds the write lock, and the fair pool.

The claim and the status change run their transaction on the event loop's thread when
SQLite's write lock is free (api/tasks/sqlite_tx.py). Another process holding the lock (a
second API worker, the CLI) must make them wait on aiosqlite's thread instead: the event
loop keeps serving, and the request completes once the lock is released. The process's one
connection goes to waiting requests in the order they asked for it (shared/db.py FairQueue).
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import AsyncEngine

from api.app import create_app
from cli.migrate import upgrade
from shared.db import SQLITE_CHECKPOINT_EVERY, create_engine
from tests.api.helpers import make_group, make_task, make_template
from tests.conftest import ADMIN, READER_PASSWORD, client_for, make_settings, running


@pytest.fixture
async def sqlite_app(tmp_path: Path) -> AsyncIterator[FastAPI]:
    url = f"sqlite+aiosqlite:///{tmp_path / 'tm.db'}"
    await asyncio.to_thread(upgrade, url)
    application = create_app(make_settings(url, str(tmp_path)))
    async with running(application):
        yield application


async def _reader_with_tasks(app: FastAPI, count: int) -> httpx.AsyncClient:
    async with client_for(app, ADMIN) as admin:
        r = await admin.post(
            "/api/v1/users",
            json={"username": "jdoe", "password": READER_PASSWORD, "email": "j@example.org"},
        )
        assert r.status_code == 201, r.text
        assert (await admin.put("/api/v1/users/jdoe/roles/user")).status_code in (200, 204)
        await make_template(admin)
        await make_group(admin, "neuro", ["jdoe"])
        for _ in range(count):
            await make_task(admin, groups=["neuro"])
    return client_for(app, ("jdoe", READER_PASSWORD))


def _hold_write_lock(app: FastAPI) -> sqlite3.Connection:
    """Another process's writer: a connection of its own inside BEGIN IMMEDIATE."""
    database = app.state.engine.url.database
    other = sqlite3.connect(database, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")
    return other


async def _ticks_while(pending: asyncio.Task[httpx.Response], seconds: float) -> int:
    """How often a 10 ms sleep completes during `seconds`, the request still pending."""
    ticks = 0
    deadline = asyncio.get_running_loop().time() + seconds
    while asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.01)
        ticks += 1
    assert not pending.done(), pending.result().text
    return ticks


async def test_a_claim_waits_for_another_writer_off_the_event_loop(sqlite_app: FastAPI) -> None:
    reader = await _reader_with_tasks(sqlite_app, 2)
    async with reader:
        # The first claim verifies the Basic password; the next ones take the hot path.
        assert (await reader.post("/api/v1/tasks/claim")).status_code == 200
        other = _hold_write_lock(sqlite_app)
        try:
            pending = asyncio.create_task(reader.post("/api/v1/tasks/claim"))
            # Blocked on the event loop, the claim would stop these sleeps (and the COMMIT
            # below would never come: the test would hang until SQLite's busy timeout).
            assert await _ticks_while(pending, 0.5) >= 20
        finally:
            other.execute("COMMIT")
            other.close()
        r = await pending
        assert r.status_code == 200, r.text
        assert r.json()["status"] == "locked"
        assert (await reader.post("/api/v1/tasks/claim")).status_code == 204


async def test_a_status_change_waits_for_another_writer_off_the_event_loop(
    sqlite_app: FastAPI,
) -> None:
    reader = await _reader_with_tasks(sqlite_app, 1)
    async with reader:
        claimed = (await reader.post("/api/v1/tasks/claim")).json()
        other = _hold_write_lock(sqlite_app)
        try:
            pending = asyncio.create_task(
                reader.put(f"/api/v1/tasks/{claimed['id']}", json={"status": "done"})
            )
            assert await _ticks_while(pending, 0.5) >= 20
        finally:
            other.execute("COMMIT")
            other.close()
        r = await pending
        assert r.status_code == 200, r.text
        assert r.json()["status"] == "done"


async def test_a_claim_cancelled_while_it_waits_keeps_the_connection_until_its_call_ends(
    sqlite_app: FastAPI,
) -> None:
    reader = await _reader_with_tasks(sqlite_app, 2)
    async with reader:
        assert (await reader.post("/api/v1/tasks/claim")).status_code == 200
        async with client_for(sqlite_app, ADMIN) as admin:
            await make_task(admin, groups=["neuro"])
        other = _hold_write_lock(sqlite_app)
        try:
            cancelled = asyncio.create_task(reader.post("/api/v1/tasks/claim"))
            await asyncio.sleep(0.2)  # waiting on aiosqlite's thread, in the busy handler
            cancelled.cancel()
            pending = asyncio.create_task(reader.post("/api/v1/tasks/claim"))
            # Given the connection while the cancelled call still waits in SQLite, the next
            # claim would block the event loop on that connection.
            assert await _ticks_while(pending, 0.5) >= 20
        finally:
            other.execute("COMMIT")
            other.close()
        with pytest.raises(asyncio.CancelledError):
            await cancelled
        r = await pending
        assert r.status_code == 200, r.text
    async with sqlite_app.state.engine.connect() as conn:
        locked = await conn.scalar(text("SELECT COUNT(*) FROM tasks WHERE status = 'locked'"))
    # The cancelled claim went through once the lock was free (its answer was lost; its
    # lease will run out), and the next one claimed the last task.
    assert locked == 3


async def test_a_claim_that_fails_on_the_event_loop_leaves_no_transaction_open(
    sqlite_app: FastAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    from api.tasks import claim_sqlite

    reader = await _reader_with_tasks(sqlite_app, 1)
    real = claim_sqlite._transaction

    def fails_halfway(conn: sqlite3.Connection, *args: object) -> object:
        conn.execute("UPDATE tasks SET priority = 99")
        raise sqlite3.OperationalError("disk I/O error")

    async with reader:
        assert (await reader.post("/api/v1/tasks/claim")).status_code in (200, 204)
        async with client_for(sqlite_app, ADMIN) as admin:
            await make_task(admin, groups=["neuro"])
        monkeypatch.setattr(claim_sqlite, "_transaction", fails_halfway)
        r = await reader.post("/api/v1/tasks/claim")
        assert r.status_code == 503, r.text
        monkeypatch.setattr(claim_sqlite, "_transaction", real)
        # Rolled back: the write lock is free for another process, and nothing was kept.
        other = _hold_write_lock(sqlite_app)
        other.execute("ROLLBACK")
        other.close()
        r = await reader.post("/api/v1/tasks/claim")
        assert r.status_code == 200, r.text
        assert r.json()["priority"] != 99


async def test_the_pool_checkpoints_the_wal_commits_do_not(tmp_path: Path) -> None:
    path = tmp_path / "wal.db"
    engine = create_engine(f"sqlite+aiosqlite:///{path}")
    try:
        async with engine.begin() as conn:
            await conn.execute(text("CREATE TABLE pages (body BLOB)"))
            assert await conn.scalar(text("PRAGMA wal_autocheckpoint")) == 0
        for _ in range(10 * SQLITE_CHECKPOINT_EVERY):
            async with engine.begin() as conn:
                await conn.execute(text("INSERT INTO pages VALUES (zeroblob(4000))"))
        # Each commit adds at least one 4 KiB page to the WAL. Checkpointed every
        # SQLITE_CHECKPOINT_EVERY returns, the WAL starts over; without, it holds them all.
        wal = path.with_name(path.name + "-wal").stat().st_size
        assert wal < 4 * SQLITE_CHECKPOINT_EVERY * 4096, wal
    finally:
        await engine.dispose()


async def test_a_detached_connection_is_closed(one_connection: AsyncEngine) -> None:
    conn = await one_connection.connect()
    raw = await conn.get_raw_connection()
    aio = raw.driver_connection
    assert aio is not None
    raw.detach()
    await conn.close()
    assert aio._connection is None


@pytest.fixture
async def one_connection(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'pool.db'}", pool_timeout=0.3)
    try:
        yield engine
    finally:
        await engine.dispose()


async def _use(engine: AsyncEngine, name: str, order: list[str]) -> None:
    async with engine.connect() as conn:
        order.append(name)
        await conn.execute(text("SELECT 1"))


async def test_a_returned_connection_goes_to_the_longest_waiter(
    one_connection: AsyncEngine,
) -> None:
    order: list[str] = []
    holder = await one_connection.connect()
    waiter = asyncio.create_task(_use(one_connection, "waiter", order))
    await asyncio.sleep(0.05)  # the waiter is queued for the connection
    await holder.close()
    # Asked for right after the return, before the waiter ran: it must queue behind it.
    await _use(one_connection, "newcomer", order)
    await waiter
    assert order == ["waiter", "newcomer"]


async def test_a_checkout_times_out_when_the_connection_stays_taken(
    one_connection: AsyncEngine,
) -> None:
    holder = await one_connection.connect()
    try:
        with pytest.raises(PoolTimeout):
            await one_connection.connect()
    finally:
        await holder.close()
    order: list[str] = []
    await _use(one_connection, "after", order)
    assert order == ["after"]


async def test_a_waiter_cancelled_as_it_is_handed_the_connection_passes_it_on(
    one_connection: AsyncEngine,
) -> None:
    order: list[str] = []
    holder = await one_connection.connect()
    first = asyncio.create_task(_use(one_connection, "first", order))
    second = asyncio.create_task(_use(one_connection, "second", order))
    await asyncio.sleep(0.05)
    await holder.close()  # handed to `first`, which has not run since
    first.cancel()
    await second
    with pytest.raises(asyncio.CancelledError):
        await first
    assert order == ["second"]
    await _use(one_connection, "later", order)
    assert order == ["second", "later"]
