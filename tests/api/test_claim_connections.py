"""The claim's own connections (api/tasks/claim_pg.py, api/tasks/claim_mysql.py).

A plain claim never takes the generic path on any backend; a claim whose connection is lost
(idle in the pool, or in the middle of the claim) answers 503 (retry) or succeeds, never
500; the next one succeeds, and no task is locked without its event.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import AsyncIterator
from typing import Any

import aiomysql
import asyncpg
import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select
from sqlalchemy.engine import make_url

import api.deps
import api.tasks.claim
from api.tasks import claim_mysql, claim_pg, claim_sqlite
from shared import precompiled
from shared.models import OutboxEvent, Task
from tests.api.helpers import events, make_group, make_task, make_template
from tests.conftest import UserFactory


async def _queue(
    admin: httpx.AsyncClient, make_user: UserFactory, tasks: int, reader_name: str = "jdoe"
) -> httpx.AsyncClient:
    reader = await make_user(reader_name)
    await make_template(admin)
    await make_group(admin, "neuro", [reader_name])
    for _ in range(tasks):
        await make_task(admin, groups=["neuro"])
    return reader


async def _locked_and_events(app: FastAPI) -> tuple[int, int]:
    async with app.state.sessions() as session:
        locked = await session.scalar(select(func.count()).where(Task.status == "locked"))
        events = await session.scalar(select(func.count()).where(OutboxEvent.type == "task.locked"))
    return int(locked or 0), int(events or 0)


async def test_a_plain_claim_takes_its_backends_own_path(
    admin: httpx.AsyncClient,
    make_user: UserFactory,
    clean_app: FastAPI,
    backend: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    reader = await _queue(admin, make_user, 2)

    async def generic(*_: Any) -> None:
        raise AssertionError("the generic claim ran")

    monkeypatch.setattr(api.tasks.claim, "claim", generic)
    for _ in range(2):
        r = await reader.post("/api/v1/tasks/claim", json={"project": "pinealis"})
        assert r.status_code == 200, r.text
    assert (await reader.post("/api/v1/tasks/claim")).status_code == 204
    assert await _locked_and_events(clean_app) == (2, 2)
    pools = {
        "postgresql": getattr(clean_app.state, "claim_pool", None),
        "mariadb": getattr(clean_app.state, "mysql_claim_pool", None),
    }
    # Each server backend claims on a pool of its own; SQLite on the engine's connection.
    assert {name for name, pool in pools.items() if pool is not None} == (
        {backend} if backend != "sqlite" else set()
    )
    if backend != "sqlite":  # of the backend's size, TASKMAN_HOT_POOL_SIZE being unset
        assert clean_app.state.settings.hot_pool_size is None
        assert _hot_pool_size(clean_app, backend) == {"postgresql": 3, "mariadb": 15}[backend]


async def _drop_claim_connections(app: FastAPI, backend: str) -> int:
    """Has the database end the claim pool's idle connections; how many it ended."""
    url = make_url(app.state.settings.async_database_url)
    if backend == "mariadb":
        pool = app.state.mysql_claim_pool
        ids = [conn.thread_id() for conn in pool._free]
        admin = await aiomysql.connect(
            host=url.host, port=url.port or 3306, user=url.username, password=url.password or ""
        )
        try:
            async with admin.cursor() as cursor:
                for thread_id in ids:
                    await cursor.execute(f"KILL CONNECTION {int(thread_id)}")
        finally:
            admin.close()
        return len(ids)
    if backend == "postgresql":
        pool = app.state.claim_pool
        pids = [h._con.get_server_pid() for h in pool._holders if h._con is not None]
        dsn = url.set(drivername="postgresql").render_as_string(hide_password=False)
        admin = await asyncpg.connect(dsn)
        try:
            for pid in pids:
                await admin.execute("SELECT pg_terminate_backend($1)", pid)
        finally:
            await admin.close()
        return len(pids)
    # SQLite: the engine's pooled connection is the claim's; dropping it is closing it.
    await app.state.engine.dispose()
    return 1


async def test_a_claim_on_a_dropped_connection_is_retried_not_a_500(
    admin: httpx.AsyncClient, make_user: UserFactory, clean_app: FastAPI, backend: str
) -> None:
    reader = await _queue(admin, make_user, 6)
    assert (await reader.post("/api/v1/tasks/claim")).status_code == 200
    assert await _drop_claim_connections(clean_app, backend) >= 1

    answers = [(await reader.post("/api/v1/tasks/claim")).status_code for _ in range(3)]
    # The first claim on a dropped connection may fail (503, to retry); none is a 500, and
    # the pool replaces what was dropped.
    assert set(answers[:1]) <= {200, 503}, answers
    assert answers[1:] == [200, 200], answers
    claimed = 1 + answers.count(200)
    assert await _locked_and_events(clean_app) == (claimed, claimed)
    r = await reader.post("/api/v1/tasks/claim")
    assert r.status_code == 200, r.text


async def _end_own_connection(app: FastAPI, backend: str, connection: Any) -> None:
    """Has the database end `connection` (a claim's, checked out) from another session."""
    url = make_url(app.state.settings.async_database_url)
    if backend == "mariadb":
        admin = await aiomysql.connect(
            host=url.host, port=url.port or 3306, user=url.username, password=url.password or ""
        )
        try:
            async with admin.cursor() as cursor:
                await cursor.execute(f"KILL CONNECTION {int(connection.thread_id())}")
        finally:
            admin.close()
        return
    dsn = url.set(drivername="postgresql").render_as_string(hide_password=False)
    admin = await asyncpg.connect(dsn)
    try:
        await admin.execute("SELECT pg_terminate_backend($1)", connection.get_server_pid())
    finally:
        await admin.close()


async def test_a_claim_whose_connection_is_lost_midway_is_a_503(
    admin: httpx.AsyncClient,
    make_user: UserFactory,
    clean_app: FastAPI,
    backend: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    reader = await _queue(admin, make_user, 4)
    failures = []
    if backend == "mariadb":
        transaction = claim_mysql._transaction

        async def lose_mariadb(connection: Any, *args: Any) -> Any:
            if not failures:
                failures.append(connection)
                await _end_own_connection(clean_app, backend, connection)
            return await transaction(connection, *args)

        monkeypatch.setattr(claim_mysql, "_transaction", lose_mariadb)
    elif backend == "postgresql":
        fetch = precompiled.fetch

        async def lose_postgresql(connection: Any, *args: Any, **params: Any) -> Any:
            if not failures:
                failures.append(connection)
                await _end_own_connection(clean_app, backend, connection)
            return await fetch(connection, *args, **params)

        monkeypatch.setattr(claim_pg.precompiled, "fetch", lose_postgresql)
    else:
        sqlite_transaction = claim_sqlite._transaction

        def locked_out(*args: Any) -> Any:
            # SQLite's writer lock not had within the busy timeout.
            if not failures:
                failures.append(args[0])
                raise sqlite3.OperationalError("database is locked")
            return sqlite_transaction(*args)

        monkeypatch.setattr(claim_sqlite, "_transaction", locked_out)

    r = await reader.post("/api/v1/tasks/claim")
    assert r.status_code == 503, r.text
    assert r.headers["retry-after"] == "1"
    assert len(failures) == 1
    # The pool replaces the lost connection; nothing was locked without its event.
    for _ in range(2):
        r = await reader.post("/api/v1/tasks/claim")
        assert r.status_code == 200, r.text
    assert await _locked_and_events(clean_app) == (2, 2)


async def test_claim_events_list_tags_in_code_point_order(
    admin: httpx.AsyncClient, make_user: UserFactory, clean_app: FastAPI
) -> None:
    reader = await _queue(admin, make_user, 0)
    # Distinct also where names compare case- and accent-insensitively (MariaDB's default).
    tags = ["b", "A", "\u00e9cole", "_x", "Z9"]
    created = await make_task(admin, groups=["neuro"], tags=tags)
    r = await reader.post("/api/v1/tasks/claim")
    assert r.status_code == 200, r.text
    assert r.json()["id"] == created["id"]
    (locked,) = [e for e in await events(clean_app, created["id"]) if e.type == "task.locked"]
    # As Python's sorted() orders them (and every other path writes them).
    assert json.loads(locked.payload)["task"]["tags"] == sorted(tags)


async def _fresh_hot_pool(app: FastAPI, backend: str) -> None:
    """Closes the fast paths' pool, so that the next claim opens one with the settings."""
    if backend == "postgresql":
        await claim_pg.close(app)
    elif backend == "mariadb":
        await claim_mysql.close(app)


@pytest.fixture
async def one_hot_connection(
    clean_app: FastAPI, backend: str, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[None]:
    """The fast paths' pool opened afresh with one connection, and closed again after."""
    await _fresh_hot_pool(clean_app, backend)
    monkeypatch.setattr(clean_app.state.settings, "hot_pool_size", 1)
    yield
    await _fresh_hot_pool(clean_app, backend)


def _hold(backend: str) -> Any:
    """Takes a fast-path connection out of the pool, for as long as the block runs."""
    return claim_pg.connection if backend == "postgresql" else claim_mysql.connection


def _hot_pool_size(app: FastAPI, backend: str) -> int:
    if backend == "postgresql":
        return int(app.state.claim_pool.get_max_size())
    return int(app.state.mysql_claim_pool.maxsize)


async def test_claims_beyond_the_hot_pool_wait_their_turn(
    admin: httpx.AsyncClient,
    make_user: UserFactory,
    clean_app: FastAPI,
    backend: str,
    one_hot_connection: None,
) -> None:
    reader = await _queue(admin, make_user, 12)
    answers = await asyncio.gather(*(reader.post("/api/v1/tasks/claim") for _ in range(12)))
    assert [r.status_code for r in answers] == [200] * 12, [r.text for r in answers]
    assert len({r.json()["id"] for r in answers}) == 12
    if backend != "sqlite":  # SQLite claims on the engine's one connection
        assert _hot_pool_size(clean_app, backend) == 1
    assert (await reader.post("/api/v1/tasks/claim")).status_code == 204
    assert await _locked_and_events(clean_app) == (12, 12)


# SQLite claims on the engine's one connection: TASKMAN_HOT_POOL_* do not apply there.
HOT_POOLED = pytest.mark.parametrize("database", ["postgresql", "mariadb"], indirect=True)


@HOT_POOLED
async def test_no_hot_connection_free_in_time_is_a_503_then_claims_go_on(
    admin: httpx.AsyncClient,
    make_user: UserFactory,
    clean_app: FastAPI,
    backend: str,
    monkeypatch: pytest.MonkeyPatch,
    one_hot_connection: None,
) -> None:
    reader = await _queue(admin, make_user, 1)
    task = await make_task(admin, groups=["neuro"])
    monkeypatch.setattr(clean_app.state.settings, "hot_pool_timeout_seconds", 0.2)
    async with _hold(backend)(clean_app):
        claim = await reader.post("/api/v1/tasks/claim")
        change = await reader.put(f"/api/v1/tasks/{task['id']}", json={"status": "locked"})
    for r in (claim, change):
        assert r.status_code == 503, r.text
        assert r.headers["retry-after"] == "1"
    assert await _locked_and_events(clean_app) == (0, 0)
    r = await reader.post("/api/v1/tasks/claim")
    assert r.status_code == 200, r.text


@HOT_POOLED
async def test_a_basic_password_is_checked_before_a_hot_connection_is_taken(
    admin: httpx.AsyncClient,
    make_user: UserFactory,
    clean_app: FastAPI,
    backend: str,
    monkeypatch: pytest.MonkeyPatch,
    one_hot_connection: None,
) -> None:
    """The password check (argon2, tens of ms) must not hold one of the few hot connections:
    with the only one free during the check, the claim goes through."""
    # A user no earlier test logged in as: its password is not in the credential cache.
    reader = await _queue(admin, make_user, 1, "kim-basic-first")
    monkeypatch.setattr(clean_app.state.settings, "hot_pool_timeout_seconds", 0.5)
    checks = []
    check = api.deps.actor_of

    async def check_with_the_hot_connection_free(request: Any, fetch: Any) -> Any:
        async with _hold(backend)(clean_app):  # TimeoutError if the claim held it already
            checks.append(request.url.path)
        return await check(request, fetch)

    monkeypatch.setattr(api.deps, "actor_of", check_with_the_hot_connection_free)
    r = await reader.post("/api/v1/tasks/claim")
    assert r.status_code == 200, r.text
    assert checks == ["/api/v1/tasks/claim"]
    # Verified and cached: the next claim checks no password.
    assert (await reader.post("/api/v1/tasks/claim")).status_code == 204
    assert len(checks) == 1
