"""Engine and session factories, with the per-database settings the service relies on."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)


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
        options["connect_args"] = {"timeout": 30}
        # SQLite has one writer and every transaction takes the write lock at BEGIN: one
        # connection per process, with requests queueing for it in order, beats several
        # connections polling SQLite's busy handler (which sleeps in growing steps).
        options["pool_size"] = 1
        options["max_overflow"] = 0
        options["pool_timeout"] = 120
    elif backend == "mysql":
        options["isolation_level"] = "READ COMMITTED"
        options["connect_args"] = {"charset": "utf8mb4"}
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
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=False)
