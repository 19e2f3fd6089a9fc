"""Throw-away benchmark databases, built by the migrations and filled with set-based SQL.

The queue is seeded in one statement per database (generate_series on PostgreSQL, a
digits cross join on MariaDB, a recursive CTE on SQLite) and topped up before every
measurement, so a run never sees an empty queue. Every seeded task is linked to one group,
so the reader reaches it through its membership, as group work is handed out in a study.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import TextClause, bindparam, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from bench.cpu import pids_named, postgres_backends
from cli.migrate import upgrade
from shared.db import create_engine
from shared.models.base import UTCDateTime
from shared.periodic import periodic
from shared.settings import Settings
from shared.vacuum import TaskVacuum

PG_ADMIN_URL = os.environ.get(
    "BENCH_PG_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
)
MARIADB_ADMIN_URL = os.environ.get("BENCH_MARIADB_URL", "mysql+aiomysql://root@127.0.0.1:3306/")

_COLUMNS = (
    "project, template_id, content, status, priority, lock_version, share_hash, "
    "event_sequence, create_time, update_time"
)
# Content like a study's task: which scan to open and what to measure. Priorities 0-2, so
# the claim's order (priority first, then age) is exercised; share_hash is the stable
# pull-weight hash in [0, 1).
_PG_SEED = f"""
WITH new AS (
  INSERT INTO tasks ({_COLUMNS})
  SELECT 'bench', :template_id,
         '{{"experiment": "BENCH_E' || g || '", "scan": "T1w", "landmarks": 12}}',
         'queued', g % 3, 0, random(), 0, :now, :now
  FROM generate_series(1, :count) AS g
  RETURNING id
)
INSERT INTO task_group_links (task_id, group_id) SELECT id, :group_id FROM new
"""
_MARIADB_SEED = f"""
INSERT INTO tasks ({_COLUMNS})
SELECT 'bench', :template_id,
       CONCAT('{{"experiment": "BENCH_E', n, '", "scan": "T1w", "landmarks": 12}}'),
       'queued', n % 3, 0, RAND(), 0, :now, :now
FROM ({{numbers}}) AS s WHERE n < :count
"""
_SQLITE_SEED = f"""
WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < :count)
INSERT INTO tasks ({_COLUMNS})
SELECT 'bench', :template_id,
       '{{"experiment": "BENCH_E' || n || '", "scan": "T1w", "landmarks": 12}}',
       'queued', n % 3, 0, random() / 18446744073709551616.0 + 0.5, 0, :now, :now
FROM s
"""
_LINK_NEW = (
    "INSERT INTO task_group_links (task_id, group_id) "
    "SELECT id, :group_id FROM tasks WHERE id > :after"
)


@dataclass(frozen=True)
class BenchDatabase:
    backend: str  # "postgresql", "mariadb" or "sqlite"
    name: str
    url: str  # SQLAlchemy async URL, as TASKMAN_DATABASE_URL takes it

    @property
    def asyncpg_dsn(self) -> str:
        """The same database as a plain asyncpg DSN (PostgreSQL only)."""
        return make_url(self.url).set(drivername="postgresql").render_as_string(False)


async def _admin(url: str, statement: str) -> None:
    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as conn:
            await conn.execute(text(statement))
    finally:
        await engine.dispose()


def database_for(backend: str, name: str, tmp_dir: Path) -> BenchDatabase:
    """Where the database named `name` lives (nothing is created yet)."""
    if backend == "postgresql":
        url = make_url(PG_ADMIN_URL).set(database=name).render_as_string(False)
    elif backend == "mariadb":
        url = make_url(MARIADB_ADMIN_URL).set(database=name).render_as_string(False)
    elif backend == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_dir / name}.db"
    else:
        raise ValueError(backend)
    return BenchDatabase(backend, name, url)


async def create(database: BenchDatabase) -> None:
    """Create the (empty) database and migrate it to head."""
    if database.backend == "postgresql":
        await _admin(PG_ADMIN_URL, f'CREATE DATABASE "{database.name}"')
    elif database.backend == "mariadb":
        await _admin(
            MARIADB_ADMIN_URL,
            f"CREATE DATABASE `{database.name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci",
        )
    # Alembic's env.py runs its own event loop, so it gets a thread of its own.
    await asyncio.to_thread(upgrade, database.url)


async def drop(database: BenchDatabase) -> None:
    if database.backend == "postgresql":
        await _admin(PG_ADMIN_URL, f'DROP DATABASE IF EXISTS "{database.name}" WITH (FORCE)')
    elif database.backend == "mariadb":
        await _admin(MARIADB_ADMIN_URL, f"DROP DATABASE IF EXISTS `{database.name}`")
    else:
        path = Path(make_url(database.url).database or "")
        for suffix in ("", "-wal", "-shm"):
            path.with_name(path.name + suffix).unlink(missing_ok=True)


def database_processes(database: BenchDatabase) -> list[int]:
    """The database server processes doing this benchmark's work, for CPU accounting.

    PostgreSQL: the backends connected to the benchmark database (other databases on the
    same server are left out). MariaDB: the whole server process, whoever else uses it.
    SQLite: none, it runs inside the service.
    """
    if database.backend == "postgresql":
        return postgres_backends(database.name)
    if database.backend == "mariadb":
        return pids_named("mariadbd", "mysqld")
    return []


def _digits(count: int) -> str:
    """SELECT of n = 0 .. 10^k - 1 (the least k with 10^k >= count), as a digits cross join."""
    places = max(1, len(str(max(count - 1, 1))))
    digits = " UNION ALL ".join(f"SELECT {d} AS d" for d in range(10))
    terms = " + ".join(f"{10**i} * d{i}.d" for i in range(places))
    tables = ", ".join(f"({digits}) AS d{i}" for i in range(places))
    return f"SELECT {terms} AS n FROM {tables}"


def _seed_statement(backend: str, count: int) -> TextClause:
    if backend == "postgresql":
        sql = _PG_SEED
    elif backend == "mariadb":
        sql = _MARIADB_SEED.replace("{numbers}", _digits(count))
    else:
        sql = _SQLITE_SEED
    return text(sql).bindparams(bindparam("now", type_=UTCDateTime()))


async def _add_tasks(
    engine: AsyncEngine, backend: str, count: int, template_id: int, group_id: int
) -> None:
    values = {
        "template_id": template_id,
        "group_id": group_id,
        "count": count,
        "now": datetime.now(UTC),
    }
    async with engine.begin() as conn:
        if backend == "postgresql":
            await conn.execute(_seed_statement(backend, count), values)
            return
        after = (await conn.execute(text("SELECT COALESCE(MAX(id), 0) FROM tasks"))).scalar_one()
        await conn.execute(_seed_statement(backend, count), values)
        await conn.execute(text(_LINK_NEW), {"group_id": group_id, "after": after})


async def _refresh_statistics(engine: AsyncEngine, backend: str) -> None:
    """Fresh planner statistics (and, on PostgreSQL, no dead rows) before a measurement."""
    if backend == "postgresql":
        async with engine.connect() as conn:
            conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
            for table in ("tasks", "task_group_links", "outbox_events"):
                await conn.execute(text(f"VACUUM (ANALYZE) {table}"))
    elif backend == "mariadb":
        async with engine.connect() as conn:
            await conn.execute(text("ANALYZE TABLE tasks, task_group_links"))
    else:
        async with engine.begin() as conn:
            await conn.execute(text("ANALYZE"))


async def ensure_queued(
    database: BenchDatabase, minimum: int, template_id: int, group_id: int
) -> tuple[int, int, float]:
    """Top the queue up to `minimum` queued tasks: (queued before, added, seconds taken)."""
    started = asyncio.get_running_loop().time()
    engine = create_engine(database.url)
    try:
        async with engine.connect() as conn:
            queued = (
                await conn.execute(text("SELECT COUNT(*) FROM tasks WHERE status = 'queued'"))
            ).scalar_one()
        missing = max(0, minimum - queued)
        if missing:
            await _add_tasks(engine, database.backend, missing, template_id, group_id)
        await _refresh_statistics(engine, database.backend)
    finally:
        await engine.dispose()
    return queued, missing, asyncio.get_running_loop().time() - started


@asynccontextmanager
async def maintained(database: BenchDatabase) -> AsyncIterator[TaskVacuum]:
    """A PostgreSQL task table vacuumed as `taskmanager serve` keeps it (shared/vacuum.py,
    with the service's default interval and threshold), while the references that run without
    our service (the SQL loop, bench/bare.py) are measured. Without it their claim rate falls
    through a 60 s run as dead entries pile up at the front of the queue (autovacuum is off on
    some servers and comes at most once a minute on the others), and ours would be compared
    with a reference slowed down by something our service does not suffer from."""
    fields = Settings.model_fields
    interval = float(fields["vacuum_interval_seconds"].default)
    vacuum = TaskVacuum(database.asyncpg_dsn, int(fields["vacuum_min_dead_rows"].default))
    try:
        # What the previous measurement left dead is cleared before this one starts, and
        # `vacuums` counts the vacuums during it (the periodic job's first run comes at once).
        await vacuum.run_once()
        vacuum.vacuums = 0
        async with periodic("bench-vacuum", interval, vacuum.run_once):
            yield vacuum
    finally:
        await vacuum.close()
