"""SQLite's hot paths borrow the process's one connection straight from the pool's queue.

The claim and the status change take the connection's record from the fair queue
(shared/db.py `FairPool.borrow`) instead of checking out through SQLAlchemy, and put it
back there (api/tasks/sqlite_tx.py `connection`). They must still wait their turn with
every other checkout, open the connection through SQLAlchemy when there is none, checkpoint
the WAL as a return through SQLAlchemy does, and time out with a 503 like the generic path.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import AsyncEngine

from api.app import create_app
from api.tasks import sqlite_tx
from cli.migrate import upgrade
from shared.db import SQLITE_CHECKPOINT_EVERY, FairPool, create_engine
from tests.api.helpers import make_group, make_template
from tests.conftest import ADMIN, READER_PASSWORD, client_for, make_settings, running


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'pool.db'}", pool_timeout=0.3)
    try:
        yield engine
    finally:
        await engine.dispose()


@pytest.fixture
async def sqlite_app(tmp_path: Path) -> AsyncIterator[FastAPI]:
    url = f"sqlite+aiosqlite:///{tmp_path / 'tm.db'}"
    await asyncio.to_thread(upgrade, url)
    application = create_app(make_settings(url, str(tmp_path)))
    async with running(application):
        yield application


async def _select_one(aio: object) -> int:
    conn: sqlite3.Connection = aio._conn  # type: ignore[attr-defined]
    value: int = conn.execute("SELECT 1").fetchone()[0]
    return value


@pytest.fixture
def borrowed(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Whether each borrow got the connection (True) or sent the caller to SQLAlchemy."""
    outcomes: list[bool] = []
    real = FairPool.borrow

    async def spy(self: FairPool) -> object:
        record = await real(self)
        outcomes.append(record is not None)
        return record

    monkeypatch.setattr(FairPool, "borrow", spy)
    return outcomes


async def _hot(engine: AsyncEngine, name: str, order: list[str]) -> None:
    async with sqlite_tx.connection(engine) as aio:
        order.append(name)
        assert await _select_one(aio) == 1


async def _sqlalchemy(engine: AsyncEngine, name: str, order: list[str]) -> None:
    async with engine.connect() as conn:
        order.append(name)
        await conn.execute(text("SELECT 1"))


async def test_before_any_connection_is_open_the_hot_path_opens_one(
    engine: AsyncEngine, borrowed: list[bool]
) -> None:
    order: list[str] = []
    await _hot(engine, "first", order)  # through SQLAlchemy: the pool had no connection
    await _hot(engine, "second", order)  # borrowed
    await _sqlalchemy(engine, "third", order)
    assert order == ["first", "second", "third"]
    assert borrowed == [False, True]
    assert engine.sync_engine.pool.checkedout() == 0


async def test_a_borrow_waits_its_turn_among_all_checkouts(
    engine: AsyncEngine, borrowed: list[bool]
) -> None:
    order: list[str] = []
    holder = await engine.connect()
    first = asyncio.create_task(_sqlalchemy(engine, "sqlalchemy, queued first", order))
    await asyncio.sleep(0.02)
    second = asyncio.create_task(_hot(engine, "hot, queued second", order))
    await asyncio.sleep(0.02)
    third = asyncio.create_task(_sqlalchemy(engine, "sqlalchemy, queued third", order))
    await asyncio.sleep(0.02)
    assert order == []
    await holder.close()
    await asyncio.gather(first, second, third)
    assert order == ["sqlalchemy, queued first", "hot, queued second", "sqlalchemy, queued third"]
    assert borrowed == [True]


async def test_a_borrow_times_out_when_the_connection_stays_taken(engine: AsyncEngine) -> None:
    holder = await engine.connect()
    try:
        with pytest.raises(PoolTimeout):
            await _hot(engine, "never", [])
    finally:
        await holder.close()
    order: list[str] = []
    await _hot(engine, "after", order)
    assert order == ["after"]


async def test_an_invalidated_connection_is_reopened_through_sqlalchemy(
    engine: AsyncEngine, borrowed: list[bool]
) -> None:
    conn = await engine.connect()
    await conn.invalidate()
    await conn.close()
    order: list[str] = []
    await _hot(engine, "reopened", order)
    await _hot(engine, "borrowed", order)
    assert order == ["reopened", "borrowed"]
    assert borrowed == [False, True]


async def test_a_transaction_left_open_is_rolled_back_on_return(
    engine: AsyncEngine, borrowed: list[bool]
) -> None:
    await _hot(engine, "opens the connection", [])
    async with sqlite_tx.connection(engine) as aio:
        aio._conn.execute("CREATE TABLE t (x INTEGER)")
        aio._conn.execute("BEGIN IMMEDIATE")
        aio._conn.execute("INSERT INTO t VALUES (1)")
    assert borrowed == [False, True]
    async with engine.connect() as conn:
        assert await conn.scalar(text("SELECT count(*) FROM t")) == 0


async def _reader_with_queue(app: FastAPI, count: int) -> None:
    async with client_for(app, ADMIN) as admin:
        user = {"username": "jdoe", "password": READER_PASSWORD}
        r = await admin.post("/api/v1/users", json=user)
        assert r.status_code == 201, r.text
        assert (await admin.put("/api/v1/users/jdoe/roles/user")).status_code in (200, 204)
        await make_template(admin)
        await make_group(admin, "neuro", ["jdoe"])
        task = {"project": "pinealis", "template": "glandula_pinealis", "groups": ["neuro"]}
        r = await admin.post(
            "/api/v1/tasks/bulk",
            json={"tasks": [{**task, "content": f"scan {i}"} for i in range(count)]},
        )
        assert r.status_code in (200, 201), r.text


async def test_hot_path_claims_alone_keep_the_wal_checkpointed(
    sqlite_app: FastAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    checkpoints: list[int] = []
    real = sqlite_tx._checkpoint

    def counted(conn: sqlite3.Connection) -> None:
        real(conn)
        checkpoints.append(1)

    monkeypatch.setattr(sqlite_tx, "_checkpoint", counted)
    claims = 10 * SQLITE_CHECKPOINT_EVERY
    await _reader_with_queue(sqlite_app, claims)
    async with client_for(sqlite_app, ("jdoe", READER_PASSWORD)) as reader:
        for _ in range(claims):
            r = await reader.post("/api/v1/tasks/claim")
            assert r.status_code == 200, r.text
    # Each claim adds several 4 KiB pages to the WAL (the task, its indexes, the event):
    # checkpointed every SQLITE_CHECKPOINT_EVERY returns, the WAL starts over; without, it
    # holds all of them.
    database = Path(sqlite_app.state.engine.url.database)
    wal = database.with_name(database.name + "-wal").stat().st_size
    assert wal < 2 * SQLITE_CHECKPOINT_EVERY * 16 * 4096, wal
    assert len(checkpoints) >= claims // SQLITE_CHECKPOINT_EVERY - 1


async def test_a_failed_checkpoint_does_not_fail_the_request(
    sqlite_app: FastAPI, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def fails(conn: sqlite3.Connection) -> None:
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(sqlite_tx, "_checkpoint", fails)
    claims = SQLITE_CHECKPOINT_EVERY + 1
    await _reader_with_queue(sqlite_app, claims)
    with caplog.at_level(logging.WARNING, logger="taskmanager.sqlite"):
        async with client_for(sqlite_app, ("jdoe", READER_PASSWORD)) as reader:
            for _ in range(claims):
                r = await reader.post("/api/v1/tasks/claim")
                assert r.status_code == 200, r.text
    assert "WAL checkpoint on return failed" in caplog.text


async def test_a_claim_that_waits_too_long_for_the_connection_gets_503(
    sqlite_app: FastAPI,
) -> None:
    await _reader_with_queue(sqlite_app, 1)
    engine: AsyncEngine = sqlite_app.state.engine
    async with client_for(sqlite_app, ("jdoe", READER_PASSWORD)) as reader:
        holder = await engine.connect()
        engine.sync_engine.pool._timeout = 0.2  # type: ignore[attr-defined]
        try:
            r = await reader.post("/api/v1/tasks/claim")
        finally:
            await holder.close()
        assert r.status_code == 503, r.text
        assert r.headers["retry-after"] == "1"
        assert (await reader.post("/api/v1/tasks/claim")).status_code == 200


async def test_a_request_that_waits_too_long_for_the_connection_gets_503(
    sqlite_app: FastAPI,
) -> None:
    """The generic path too: a pool timeout is an outage to retry, not a 500."""
    await _reader_with_queue(sqlite_app, 1)
    engine: AsyncEngine = sqlite_app.state.engine
    async with client_for(sqlite_app, ("jdoe", READER_PASSWORD)) as reader:
        assert (await reader.get("/api/v1/tasks")).status_code == 200  # credential verified
        holder = await engine.connect()
        engine.sync_engine.pool._timeout = 0.2  # type: ignore[attr-defined]
        try:
            r = await reader.get("/api/v1/tasks")
        finally:
            await holder.close()
        assert r.status_code == 503, r.text
        assert r.json()["detail"] == "The database is busy or unavailable; retry"
