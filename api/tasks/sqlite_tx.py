"""SQLite hot paths: one write transaction, run where it costs least.

A hot path (the claim, a status change) is one function over the raw `sqlite3` connection:
it runs every statement of its transaction and commits or rolls back. The process has one
SQLite connection (shared/db.py), checked out in turn, so while a request holds it nothing
else in the process uses it, and SQLite's write lock is free unless another process (a
second API worker, the CLI) holds it. When it is free, the function runs right here on the
event loop's thread: its statements take about 0.15 ms of CPU, less than handing them to
aiosqlite's thread and back, and its COMMIT does no checkpoint (the pool checkpoints the WAL
on aiosqlite's thread). When another process holds it, the function runs on aiosqlite's
thread and waits there in SQLite's busy handler, as every other transaction does, never on
the event loop.

For that, no call may still be running on aiosqlite's thread when a connection goes back to
the pool: a request cancelled while its call runs there (`on_thread`) waits for the call to
end before it gives the connection up. (SQLAlchemy's own calls invalidate the connection
when cancelled.)

The hot paths borrow the connection straight from the pool's queue (`connection`), in turn
with every other checkout, and checkpoint the WAL on aiosqlite's thread every
SQLITE_CHECKPOINT_EVERY returns, as a return through SQLAlchemy does (shared/db.py).
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.util import greenlet_spawn

from shared.db import SQLITE_BUSY_TIMEOUT_MS, WAL_CHECKPOINT, FairPool

log = logging.getLogger("taskmanager.sqlite")

T = TypeVar("T")
Work = Callable[..., T]

_WAIT = f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}"


def _begin_now(conn: sqlite3.Connection) -> bool:
    """BEGIN IMMEDIATE if the write lock can be had without waiting."""
    conn.execute("PRAGMA busy_timeout=0")
    try:
        conn.execute("BEGIN IMMEDIATE")
    except sqlite3.OperationalError as exc:
        # SQLITE_BUSY and its extended codes (SQLITE_BUSY_RECOVERY, ...).
        if exc.sqlite_errorcode & 0xFF == sqlite3.SQLITE_BUSY:
            return False
        raise
    finally:
        conn.execute(_WAIT)
    return True


def _run(conn: sqlite3.Connection, work: Work[T], args: tuple[Any, ...]) -> T:
    try:
        return work(conn, *args)
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def _begin_and_run(conn: sqlite3.Connection, work: Work[T], args: tuple[Any, ...]) -> T:
    conn.execute("BEGIN IMMEDIATE")
    return _run(conn, work, args)


async def on_thread(aio: Any, function: Callable[..., T], *args: Any) -> T:
    """`function(*args)` on aiosqlite connection `aio`'s thread.

    Cancelled, it still waits for the call to end (aiosqlite runs it regardless) and then
    raises: the connection never goes back to the pool with a call running on it.
    """
    call = asyncio.ensure_future(aio._execute(function, *args))
    try:
        return await asyncio.shield(call)
    except asyncio.CancelledError:
        while not call.done():
            try:
                await asyncio.wait([call])
            except asyncio.CancelledError:
                continue
        if not call.cancelled():
            call.exception()  # retrieved: the caller was cancelled, its outcome is moot
        raise


async def write(aio: Any, work: Work[T], *args: Any) -> T:
    """`work(conn, *args)` in a write transaction begun for it, on aiosqlite connection
    `aio` (checked out by the caller). `work` commits or rolls back; should it raise, the
    transaction is rolled back."""
    conn: sqlite3.Connection = aio._conn
    if _begin_now(conn):
        return _run(conn, work, args)
    return await on_thread(aio, _begin_and_run, conn, work, args)


@asynccontextmanager
async def connection(engine: AsyncEngine) -> AsyncIterator[Any]:
    """The process's aiosqlite connection, for one hot-path call."""
    pool = engine.sync_engine.pool
    record = await pool.borrow() if isinstance(pool, FairPool) else None
    if record is None or not isinstance(pool, FairPool):
        # No connection open yet (or it was invalidated): SQLAlchemy opens one.
        async with engine.connect() as conn:
            yield (await conn.get_raw_connection()).driver_connection
        return
    aio: Any = record.driver_connection
    try:
        yield aio
    finally:
        try:
            if aio._conn.in_transaction:
                try:
                    aio._conn.execute("ROLLBACK")
                except sqlite3.Error as exc:
                    # Its state is unknown: the next checkout opens a new one.
                    log.warning("rollback on return failed; the connection is replaced")
                    await greenlet_spawn(record.invalidate, exc)
            elif FairPool.checkpoint_due(record):
                try:
                    await on_thread(aio, _checkpoint, aio._conn)
                    FairPool.checkpointed(record)
                except sqlite3.Error:
                    # The request's own work is done and stays done; the next return retries.
                    log.warning("WAL checkpoint on return failed", exc_info=True)
        finally:
            pool.give_back(record)


def _checkpoint(conn: sqlite3.Connection) -> None:
    conn.execute(WAL_CHECKPOINT).fetchall()
