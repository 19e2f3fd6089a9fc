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


@pytest.mark.parametrize("backend", ["postgresql", "mariadb"])
async def test_downgrading_0006_requeues_tasks_held_by_a_vanished_user(
    backend: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """0006 dropped the holder's foreign key; a user row deleted by hand afterwards must not
    stop the key from coming back, nor leave a task locked by nobody."""
    db = await create_database(backend, str(tmp_path_factory.mktemp("downgrade")))
    try:
        await asyncio.to_thread(upgrade, db.url)
        engine = create_engine(db.url)
        users, templates, tasks = (metadata.tables[t] for t in ("users", "task_templates", "tasks"))
        try:
            async with engine.begin() as conn:
                reader = (
                    await conn.execute(users.insert().values(username="r", password_hash="x"))
                ).inserted_primary_key[0]
                template = (
                    await conn.execute(templates.insert().values(label="t", content="{}"))
                ).inserted_primary_key[0]
                for holder in (reader, reader + 1000):
                    await conn.execute(
                        tasks.insert().values(
                            project="p",
                            template_id=template,
                            content="{}",
                            status="locked",
                            lock_holder_id=holder,
                            lock_version=1,
                        )
                    )
            await asyncio.to_thread(downgrade, db.url, "0005")
            async with engine.connect() as conn:
                rows = await conn.execute(
                    text("SELECT status, lock_holder_id FROM tasks ORDER BY id")
                )
                assert [tuple(row) for row in rows] == [("locked", reader), ("queued", None)]
                keys = await conn.run_sync(lambda c: inspect(c).get_foreign_keys("tasks"))
            assert "fk_tasks_lock_holder_id_users" in {key["name"] for key in keys}
        finally:
            await engine.dispose()
    finally:
        await db.drop()


async def test_postgresql_lookups_by_optional_columns_use_their_partial_indexes(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """0007: the three indexes on optional columns leave out rows without a value, and a
    lookup by value, with the value as a parameter as the service sends it, still uses them."""
    db = await create_database("postgresql", str(tmp_path_factory.mktemp("partial")))
    try:
        await asyncio.to_thread(upgrade, db.url)
        engine = create_engine(db.url)
        try:
            async with engine.begin() as conn:
                indexes = await conn.run_sync(lambda c: inspect(c).get_indexes("tasks"))
                where = {
                    ix["name"]: ix.get("dialect_options", {}).get("postgresql_where")
                    for ix in indexes
                }
                assert "ix_tasks_project" not in where
                assert where["ix_tasks_application_name"] == "(application_name IS NOT NULL)"
                assert where["ix_tasks_taskgroup_id"] == "(taskgroup_id IS NOT NULL)"
                assert where["ix_tasks_project_tracking_id"] == "(tracking_id IS NOT NULL)"
                await conn.execute(text("SET LOCAL enable_seqscan = off"))
                await conn.execute(text("SET LOCAL plan_cache_mode = force_generic_plan"))
                for index, condition, value in (
                    ("ix_tasks_application_name", "application_name = $1::varchar", "'x'"),
                    ("ix_tasks_taskgroup_id", "taskgroup_id = $1::integer", "1"),
                    (
                        "ix_tasks_project_tracking_id",
                        "project = 'p' AND tracking_id = $1::varchar",
                        "'x'",
                    ),
                ):
                    name = index.replace("ix_", "q_")
                    await conn.execute(
                        text(f"PREPARE {name} AS SELECT id FROM tasks WHERE {condition}")
                    )
                    plan = "\n".join(
                        row[0]
                        for row in await conn.execute(text(f"EXPLAIN EXECUTE {name}({value})"))
                    )
                    assert f" {index} " in f"{plan} ", plan
        finally:
            await engine.dispose()
    finally:
        await db.drop()
