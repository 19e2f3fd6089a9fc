"""Fixtures: an app per database backend, a clean database per test, clients per user.

The API suite (tests/api) runs once per backend: SQLite, PostgreSQL and MariaDB. Every
schema is built by the migrations. Between tests the tables are emptied and the roles and
the admin are bootstrapped again, so tests never see each other's rows.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text

from api.app import create_app
from cli.migrate import upgrade
from shared.bootstrap import bootstrap
from shared.models import metadata
from shared.settings import Settings
from tests.backends import BACKENDS, TestDatabase, create_database

ADMIN = ("admin", "admin-password")
READER_PASSWORD = "reader-password"


def make_settings(url: str, tmp: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": url,
        "secret_key": "test-secret-key-0123456789abcdef",
        "admin_username": ADMIN[0],
        "admin_password": ADMIN[1],
        "admin_email": "admin@example.org",
        "data_dir": tmp,
        # The cheapest argon2id cost: the suite makes and checks thousands of password
        # hashes, at 0.15 s each with the default cost. (tests/unit/test_security.py checks
        # the default cost and that hashes of one cost verify under another.)
        "password_hash_memory_kib": 1024,
        "password_hash_time_cost": 1,
        "password_hash_parallelism": 1,
    }
    values.update(overrides)
    return Settings(**values)


@asynccontextmanager
async def running(app: FastAPI) -> AsyncIterator[FastAPI]:
    async with app.router.lifespan_context(app):
        yield app


def client_for(app: FastAPI, auth: tuple[str, str] | None = None) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    return httpx.AsyncClient(transport=transport, base_url="http://test", auth=auth)


@pytest.fixture(scope="session", params=BACKENDS)
async def database(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[TestDatabase]:
    db = await create_database(request.param, str(tmp_path_factory.mktemp("db")))
    await asyncio.to_thread(upgrade, db.url)
    yield db
    await db.drop()


@pytest.fixture(scope="session")
async def app(
    database: TestDatabase, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[FastAPI]:
    settings = make_settings(database.url, str(tmp_path_factory.mktemp("data")))
    application = create_app(settings, run_bootstrap=False)
    async with running(application):
        yield application


@pytest.fixture
async def clean_app(app: FastAPI) -> FastAPI:
    tables = [t.name for t in reversed(metadata.sorted_tables)]
    async with app.state.engine.connect() as conn:
        backend = conn.dialect.name
        if backend == "postgresql":
            await conn.execute(text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))
        elif backend == "mysql":
            await conn.execute(text("SET FOREIGN_KEY_CHECKS = 0"))
            for table in tables:
                await conn.execute(text(f"TRUNCATE TABLE `{table}`"))
            await conn.execute(text("SET FOREIGN_KEY_CHECKS = 1"))
        else:
            for table in tables:
                await conn.execute(text(f'DELETE FROM "{table}"'))
        await conn.commit()
    await bootstrap(app.state.sessions, app.state.settings)
    return app


@pytest.fixture
def backend(database: TestDatabase) -> str:
    return database.backend


@pytest.fixture
async def admin(clean_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(clean_app, ADMIN) as client:
        yield client


@pytest.fixture
async def anon(clean_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(clean_app) as client:
        yield client


UserFactory = Callable[..., Awaitable[httpx.AsyncClient]]


@pytest.fixture
async def make_user(clean_app: FastAPI, admin: httpx.AsyncClient) -> AsyncIterator[UserFactory]:
    """Create a user through the API and return a Basic-auth client for it."""
    clients: list[httpx.AsyncClient] = []

    async def factory(
        username: str,
        *,
        roles: tuple[str, ...] = ("user",),
        weight: float = 1.0,
        password: str = READER_PASSWORD,
        email: str | None = None,
    ) -> httpx.AsyncClient:
        response = await admin.post(
            "/api/v1/users",
            json={
                "username": username,
                "name": username.title(),
                "email": email or f"{username}@example.org",
                "password": password,
                "assignment_weight": weight,
                "roles": list(roles),
            },
        )
        assert response.status_code == 201, response.text
        client = client_for(clean_app, (username, password))
        clients.append(client)
        return client

    yield factory
    for client in clients:
        await client.aclose()
