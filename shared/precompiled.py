"""Run SQLAlchemy Core statements straight on an asyncpg connection (the hot paths).

A statement built once (module level, or cached per shape) is compiled once for asyncpg;
each call then costs one prepared-statement execution, without SQLAlchemy's per-call work.
The statement stays the one source of truth: the generic path executes the same object
through the session.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy.dialects.postgresql.asyncpg import dialect as asyncpg_dialect
from sqlalchemy.sql import Executable

_DIALECT = asyncpg_dialect()  # type: ignore[no-untyped-call]
_COMPILED: dict[int, tuple[Executable, str, list[str], dict[str, Any]]] = {}


def compiled(statement: Executable) -> tuple[str, list[str], dict[str, Any]]:
    """The statement's SQL for asyncpg, the order of its parameters, and their defaults.

    Literal values in the statement (`status='locked'`, `+ 1`) are parameters too; their
    values come with the compiled statement.
    """
    entry = _COMPILED.get(id(statement))
    if entry is None or entry[0] is not statement:
        result = statement.compile(dialect=_DIALECT)  # type: ignore[attr-defined]
        entry = (statement, str(result), list(result.positiontup or []), dict(result.params))
        _COMPILED[id(statement)] = entry
    return entry[1], entry[2], entry[3]


def _bind(value: Any) -> Any:
    # Timestamps are stored as naive UTC (see shared.models.base.UTCDateTime).
    if isinstance(value, datetime) and value.tzinfo is not None:
        return value.astimezone(UTC).replace(tzinfo=None)
    return value


def arguments(statement: Executable, params: dict[str, Any]) -> tuple[str, list[Any]]:
    sql, names, defaults = compiled(statement)
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
