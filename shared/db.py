"""Engine and session factories, with the per-database settings the service relies on."""

from __future__ import annotations

import asyncio
from collections import deque
from pathlib import Path
from typing import Any, cast

from sqlalchemy import event, exc
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.pool import AsyncAdaptedQueuePool, ConnectionPoolEntry
from sqlalchemy.pool.base import _ConnectionRecord
from sqlalchemy.util import await_
from sqlalchemy.util.queue import AsyncAdaptedQueue, Empty, Full

# How long a SQLite transaction waits for another process's write lock before failing.
SQLITE_BUSY_TIMEOUT_MS = 30_000
# A connection checkpoints SQLite's WAL every this many returns to the pool (SQLite's own
# automatic checkpoint, every 1,000 WAL pages, runs inside a COMMIT and is turned off).
SQLITE_CHECKPOINT_EVERY = 100
WAL_CHECKPOINT = "PRAGMA wal_checkpoint(PASSIVE)"


class FairQueue(AsyncAdaptedQueue[Any]):
    """A pool queue that hands a returned connection to the longest waiter.

    SQLAlchemy's asyncio queue leaves a returned connection in the queue and wakes a waiter;
    a request that checks out before the waiter runs takes it, and the waiter queues again
    at the back. With SQLite's one connection per process and checkouts that complete
    without yielding, some requests waited half a second while others passed them. Here a
    returned connection goes straight to the first waiter, and a checkout only takes a
    connection from the queue when nobody is waiting.
    """

    def __init__(self, maxsize: int = 0, use_lifo: bool = False) -> None:
        super().__init__(maxsize, use_lifo)
        self._items: deque[Any] = deque()
        self._waiters: deque[asyncio.Future[Any]] = deque()

    def empty(self) -> bool:
        return not self._items

    def full(self) -> bool:
        return 0 < self.maxsize <= len(self._items)

    def qsize(self) -> int:
        return len(self._items)

    def put_nowait(self, item: Any) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(item)
                return
        if self.full():
            raise Full()
        self._items.append(item)

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        self.put_nowait(item)

    def get_nowait(self) -> Any:
        if not self._items:
            raise Empty()
        return self._items.popleft()

    def get(self, block: bool = True, timeout: float | None = None) -> Any:
        if self._items or not block:
            return self.get_nowait()
        return await_(self._wait(timeout))

    async def take(self, seconds: float | None) -> Any:
        """`get` for a coroutine (no greenlet): a connection, or Empty after `seconds`."""
        if self._items:
            return self._items.popleft()
        return await self._wait(seconds)

    async def _wait(self, seconds: float | None) -> Any:
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[Any] = loop.create_future()
        self._waiters.append(waiter)
        expired = False

        def expire() -> None:
            nonlocal expired
            if not waiter.done():
                expired = True
                waiter.cancel()

        timer = loop.call_later(seconds, expire) if seconds is not None else None
        try:
            return await waiter
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if expired and not (task is not None and task.cancelling()):
                raise Empty() from None
            if waiter.done() and not waiter.cancelled():
                # Handed a connection, then cancelled before taking it: pass it on.
                self.put_nowait(waiter.result())
            raise
        finally:
            if timer is not None:
                timer.cancel()
            if not waiter.done():
                waiter.cancel()


class FairPool(AsyncAdaptedQueuePool):
    """The SQLite pool: one connection, handed out in queue order (`FairQueue`).

    The hot paths (api/tasks/sqlite_tx.py) borrow the connection's record straight from the
    queue and give it back there: no SQLAlchemy Connection, pool events or greenlet per
    request, which cost about as much CPU as the claim's statements themselves. Everything
    else checks out through SQLAlchemy, in the same queue.
    """

    _queue_class = FairQueue

    async def borrow(self) -> _ConnectionRecord | None:
        """The open connection's record, once it is this caller's turn; None when the pool
        has no usable connection (none opened yet, or invalidated): the caller then checks
        out through SQLAlchemy, which opens one."""
        queue = cast(FairQueue, self._pool)
        if queue.empty() and self._overflow < self._max_overflow:
            return None  # no connection opened yet
        try:
            record: _ConnectionRecord = await queue.take(self._timeout)
        except Empty:
            raise exc.TimeoutError(
                f"the SQLite connection stayed taken for {self._timeout:g} s"
            ) from None
        stale = max(self._invalidate_time, record._soft_invalidate_time) > record.starttime
        if record.dbapi_connection is None or stale:
            queue.put_nowait(record)
            return None
        return record

    def give_back(self, record: ConnectionPoolEntry) -> None:
        cast(FairQueue, self._pool).put_nowait(record)

    @staticmethod
    def checkpoint_due(record: ConnectionPoolEntry) -> bool:
        """Counts a return; True once SQLITE_CHECKPOINT_EVERY returns passed since the last
        checkpoint that succeeded (see `_on_reset`)."""
        returns: int = record.info.get("returns", 0) + 1
        record.info["returns"] = returns
        return returns >= SQLITE_CHECKPOINT_EVERY

    @staticmethod
    def checkpointed(record: ConnectionPoolEntry) -> None:
        record.info["returns"] = 0


# No JIT: a listing's count over a 10,000-task queue is costed high enough to be compiled,
# which took 20-30 ms of its 50-80 ms; the statements here are short and run once each.
POSTGRES_SESSION = {"jit": "off"}


def dialect_of(url: str) -> str:
    return make_url(url).get_backend_name()


def create_engine(url: str, **kwargs: Any) -> AsyncEngine:
    """An async engine tuned for its database.

    SQLite runs in WAL mode with a busy timeout and takes the write lock at BEGIN
    (`BEGIN IMMEDIATE`): a transaction that reads and then writes can otherwise fail at once
    with "database is locked" instead of waiting its turn. MariaDB/MySQL run at READ
    COMMITTED: `SELECT ... FOR UPDATE SKIP LOCKED` followed by an UPDATE deadlocks under
    REPEATABLE READ.
    """
    backend = dialect_of(url)
    # No ping on every checkout (a round trip per request): a connection that a database
    # restart broke fails one request with 503 and is replaced; /-/ready reports the outage.
    options: dict[str, Any] = {"pool_recycle": 1800}
    if backend == "sqlite":
        database = make_url(url).database
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        # Used from the event loop's thread too (api/tasks/sqlite_tx.py), one user at a time.
        options["connect_args"] = {
            "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000,
            "check_same_thread": False,
        }
        # SQLite has one writer and every transaction takes the write lock at BEGIN: one
        # connection per process, with requests queueing for it in order, beats several
        # connections polling SQLite's busy handler (which sleeps in growing steps).
        options["poolclass"] = FairPool
        # A local file: nothing on the other end drops idle connections.
        options["pool_recycle"] = -1
        options["pool_size"] = 1
        options["max_overflow"] = 0
        options["pool_timeout"] = 120
        # Rolled back on return only when a transaction is open (`_on_reset`): the rollback
        # SQLAlchemy does otherwise is a round trip through aiosqlite's thread per checkout.
        # The return is also where the WAL is checkpointed, on aiosqlite's thread.
        options["pool_reset_on_return"] = None
    elif backend == "mysql":
        options["isolation_level"] = "READ COMMITTED"
        options["connect_args"] = {"charset": "utf8mb4"}
    elif backend == "postgresql":
        options["connect_args"] = {"server_settings": POSTGRES_SESSION}
    options.update(kwargs)
    engine = create_async_engine(url, **options)
    if backend == "sqlite":
        _configure_sqlite(engine)
    return engine


def _configure_sqlite(engine: AsyncEngine) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" hook below issue BEGIN itself.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        # No checkpoint inside a COMMIT: the hot paths commit on the event loop's thread,
        # and a checkpoint copies pages and syncs the disk. `_on_reset` checkpoints instead.
        cursor.execute("PRAGMA wal_autocheckpoint=0")
        cursor.close()

    @event.listens_for(engine.sync_engine.pool, "reset")
    def _on_reset(dbapi_connection: Any, record: Any, state: Any) -> None:
        """A connection coming back to the pool: roll back what its user left open, and
        every SQLITE_CHECKPOINT_EVERY returns checkpoint the WAL (on aiosqlite's thread,
        the connection still out of the pool)."""
        if not state.asyncio_safe or state.terminate_only or record is None:
            return
        if record.driver_connection.in_transaction:
            dbapi_connection.rollback()
        if FairPool.checkpoint_due(record):
            cursor = dbapi_connection.cursor()
            cursor.execute(WAL_CHECKPOINT)
            cursor.close()
            FairPool.checkpointed(record)

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=False)
