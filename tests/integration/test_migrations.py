"""The migrations build exactly the schema the models describe, on every supported database."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection

from cli.migrate import downgrade, upgrade
from shared.db import create_engine
from shared.models import metadata
from shared.models.compare import EXPRESSION_INDEXES, autogenerate_options
from tests.backends import BACKENDS, create_database

if TYPE_CHECKING:  # imported by name, pytest would try to collect the dataclass as tests
    from tests.backends import TestDatabase

pytestmark = pytest.mark.backend


@pytest.fixture(params=BACKENDS)
async def fresh_database(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[TestDatabase]:
    db = await create_database(request.param, str(tmp_path_factory.mktemp("migrations")))
    yield db
    await db.drop()


def _differences(connection: Connection) -> list[Any]:
    # The options alembic/env.py configures, so autogenerate sees what a developer would.
    context = MigrationContext.configure(
        connection, opts=autogenerate_options(connection.dialect.name)
    )
    differences = list(compare_metadata(context, metadata))
    # Expression indexes are left out of the comparison; check that they exist.
    inspector = inspect(connection)
    indexes = set()
    if inspector.has_table("tasks"):
        indexes = {ix["name"] for ix in inspector.get_indexes("tasks")}
    missing = EXPRESSION_INDEXES - indexes
    if missing and inspector.has_table("tasks"):
        differences.append(("missing expression index", sorted(missing)))
    return differences


def _tables(connection: Connection) -> set[str]:
    return set(inspect(connection).get_table_names())


async def _inspect(url: str) -> tuple[list[Any], set[str], list[str]]:
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            differences = await conn.run_sync(_differences)
            tables = await conn.run_sync(_tables)
            versions: list[str] = []
            if "alembic_version" in tables:
                rows = await conn.execute(text("SELECT version_num FROM alembic_version"))
                versions = [row[0] for row in rows]
    finally:
        await engine.dispose()
    return differences, tables, versions


async def test_upgrade_matches_models_and_downgrade_removes_everything(
    fresh_database: TestDatabase,
) -> None:
    url = fresh_database.url

    await asyncio.to_thread(upgrade, url)
    differences, tables, versions = await _inspect(url)
    assert differences == [], "models and migrations differ; write a migration for:\n" + "\n".join(
        map(repr, differences)
    )
    assert tables == {t.name for t in metadata.sorted_tables} | {"alembic_version"}
    assert len(versions) == 1

    await asyncio.to_thread(downgrade, url)
    _, tables, versions = await _inspect(url)
    assert tables == {"alembic_version"}
    assert versions == []

    await asyncio.to_thread(upgrade, url)
    differences, tables, versions = await _inspect(url)
    assert differences == []
    assert tables == {t.name for t in metadata.sorted_tables} | {"alembic_version"}
    assert len(versions) == 1
