"""Run SQLAlchemy Core statements straight on an asyncpg connection (the hot paths).

A statement built once (module level, or cached per shape) is compiled once for asyncpg;
each call then costs one prepared-statement execution, without SQLAlchemy's per-call work.
The statement stays the one source of truth: the generic path executes the same object
through the session.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy.dialects.mysql.aiomysql import dialect as aiomysql_dialect
from sqlalchemy.dialects.postgresql.asyncpg import dialect as asyncpg_dialect
from sqlalchemy.engine import Dialect
from sqlalchemy.sql import Executable

_DIALECTS: dict[str, Dialect] = {
    "postgresql": asyncpg_dialect(),  # type: ignore[no-untyped-call]
    "mysql": aiomysql_dialect(),
}
_COMPILED: dict[tuple[int, str], tuple[Executable, str, list[str], dict[str, Any]]] = {}


def compiled(
    statement: Executable, backend: str = "postgresql"
) -> tuple[str, list[str], dict[str, Any]]:
    """The statement's SQL for asyncpg, the order of its parameters, and their defaults.

    Literal values in the statement (`status='locked'`, `+ 1`) are parameters too; their
    values come with the compiled statement.
    """
    key = (id(statement), backend)
    entry = _COMPILED.get(key)
    if entry is None or entry[0] is not statement:
        result = statement.compile(dialect=_DIALECTS[backend])  # type: ignore[attr-defined]
        entry = (statement, str(result), list(result.positiontup or []), dict(result.params))
        _COMPILED[key] = entry
    return entry[1], entry[2], entry[3]


def _bind(value: Any) -> Any:
    # Timestamps are stored as naive UTC (see shared.models.base.UTCDateTime).
    if isinstance(value, datetime) and value.tzinfo is not None:
        return value.astimezone(UTC).replace(tzinfo=None)
    return value


def arguments(
    statement: Executable, params: dict[str, Any], backend: str = "postgresql"
) -> tuple[str, list[Any]]:
    sql, names, defaults = compiled(statement, backend)
    return sql, [_bind(params[n] if n in params else defaults[n]) for n in names]


def utc(value: datetime | None) -> datetime | None:
    """A naive UTC timestamp from the database, made aware."""
    return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value


async def fetch(connection: Any, statement: Executable, **params: Any) -> list[Any]:
    sql, args = arguments(statement, params)
    return list(await connection.fetch(sql, *args))


async def execute(connection: Any, statement: Executable, **params: Any) -> None:
    sql, args = arguments(statement, params)
    await connection.execute(sql, *args)


async def mysql_fetch(connection: Any, statement: Executable, **params: Any) -> list[Any]:
    """The same on an aiomysql connection."""
    sql, args = arguments(statement, params, "mysql")
    async with connection.cursor() as cursor:
        await cursor.execute(sql, args)
        return list(await cursor.fetchall())
