"""Session settings every PostgreSQL connection of the service runs with."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

from sqlalchemy import text

from api.tasks import claim_pg
from shared.db import create_engine
from tests.backends import create_database, require_service


async def test_connections_run_without_jit(tmp_path: Path) -> None:
    require_service("postgresql")
    db = await create_database("postgresql", str(tmp_path))
    try:
        engine = create_engine(db.url)
        try:
            async with engine.connect() as conn:
                assert (await conn.execute(text("SHOW jit"))).scalar_one() == "off"
        finally:
            await engine.dispose()
        # The hot paths' own pool too.
        app = SimpleNamespace(
            state=SimpleNamespace(
                settings=SimpleNamespace(async_database_url=db.url, hot_pool_size=3)
            )
        )
        pool = await claim_pg.raw_pool(cast(Any, app))
        try:
            assert await pool.fetchval("SHOW jit") == "off"
        finally:
            await claim_pg.close(cast(Any, app))
    finally:
        await db.drop()
