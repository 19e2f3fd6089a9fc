"""Throw-away databases on the three supported engines, built through the migrations."""

from __future__ import annotations

import os
import socket
import uuid
from dataclasses import dataclass

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

CI = os.environ.get("CI", "").lower() == "true"
PG_ADMIN_URL = os.environ.get(
    "TEST_PG_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
)
MARIADB_ADMIN_URL = os.environ.get("TEST_MARIADB_URL", "mysql+aiomysql://root@127.0.0.1:3306/")
AMQP_URL = os.environ.get("TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")

BACKENDS = ("sqlite", "postgresql", "mariadb")
_PORTS = {"postgresql": 5432, "mariadb": 3306, "rabbitmq": 5672}


def service_up(name: str) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", _PORTS[name]), timeout=1):
            return True
    except OSError:
        return False


def require_service(name: str) -> None:
    """Skip locally when a service is down; with CI=true, fail instead."""
    if service_up(name):
        return
    message = f"{name} is not reachable on 127.0.0.1:{_PORTS[name]}"
    if CI:
        pytest.fail(f"{message} (CI=true requires it)", pytrace=False)
    pytest.skip(message)


@dataclass
class TestDatabase:
    backend: str
    url: str
    name: str

    async def drop(self) -> None:
        if self.backend == "postgresql":
            engine = create_async_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
            async with engine.connect() as conn:
                await conn.execute(text(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)'))
            await engine.dispose()
        elif self.backend == "mariadb":
            engine = create_async_engine(MARIADB_ADMIN_URL)
            async with engine.connect() as conn:
                await conn.execute(text(f"DROP DATABASE IF EXISTS `{self.name}`"))
            await engine.dispose()


async def create_database(backend: str, tmp_dir: str) -> TestDatabase:
    """An empty database with a unique name (nothing is shared with other runs)."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw")
    name = f"tm_test_{worker}_{uuid.uuid4().hex[:8]}"
    if backend == "sqlite":
        return TestDatabase(backend, f"sqlite+aiosqlite:///{tmp_dir}/{name}.db", name)
    if backend == "postgresql":
        require_service("postgresql")
        engine = create_async_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
        async with engine.connect() as conn:
            await conn.execute(text(f'CREATE DATABASE "{name}"'))
        await engine.dispose()
        base = PG_ADMIN_URL.rsplit("/", 1)[0]
        return TestDatabase(backend, f"{base}/{name}", name)
    if backend == "mariadb":
        require_service("mariadb")
        engine = create_async_engine(MARIADB_ADMIN_URL)
        async with engine.connect() as conn:
            await conn.execute(
                text(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
            )
        await engine.dispose()
        return TestDatabase(backend, f"{MARIADB_ADMIN_URL.rstrip('/')}/{name}", name)
    raise ValueError(backend)
