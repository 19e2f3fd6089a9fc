"""Writes that pick or rescale take their row locks in the order every pick takes them.

A pick locks a group's member rows in user order, groups in id order, then the readers'
user rows in id order (api/tasks/distribution.py). A transaction that takes one of those
rows out of that order first, and then waits for one a pick holds, can deadlock with the
pick. Each test holds the first row of that order in another transaction, lets the request
run into it and wait, and checks that the request took none of the rows after it meanwhile.
SQLite has a single writer and no row locks, so these run on PostgreSQL and MariaDB only.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from api.tasks import distribution
from tests.api.helpers import make_group, make_template
from tests.conftest import UserFactory

WAIT_SECONDS = 20.0
LOCK_MEMBER = "SELECT user_id FROM group_members WHERE group_id = :g AND user_id = :u FOR UPDATE"

_WAITING = {
    "postgresql": (
        "SELECT COUNT(*) FROM pg_stat_activity "
        "WHERE datname = current_database() AND wait_event_type = 'Lock'"
    ),
    # innodb_trx leaves out a transaction that waits in a locking read after only plain
    # reads, so: another connection's locking statement on this database running for over
    # 0.3 s.
    "mariadb": (
        "SELECT COUNT(*) FROM information_schema.processlist WHERE db = DATABASE() "
        "AND id <> CONNECTION_ID() AND time_ms > 300 "
        "AND (info LIKE '%FOR UPDATE%' OR info LIKE '%SHARE%' OR info LIKE 'UPDATE %')"
    ),
}


# Only the databases with row locks (not SQLite: one writer locks the whole database).
pytestmark = pytest.mark.parametrize("database", ["postgresql", "mariadb"], indirect=True)


async def _id(admin: httpx.AsyncClient, path: str) -> int:
    r = await admin.get(path)
    assert r.status_code == 200, r.text
    return int(r.json()["uri"].rsplit("/", 1)[-1])


@asynccontextmanager
async def _waiting(
    app: FastAPI, backend: str, call: Awaitable[httpx.Response], sql: str, **params: Any
) -> AsyncIterator[asyncio.Future[httpx.Response]]:
    """Start `call` while another transaction holds the rows `sql` locks; the block runs
    once the request waits for them, and the rows are let go when it ends. If the block
    fails, the request is cancelled first, so it does not run on into the next test."""
    async with app.state.sessions() as holder, holder.begin():
        await holder.execute(text(sql), params)
        request = asyncio.ensure_future(call)
        try:
            await _blocked(app, backend, request)
            yield request
        except BaseException:
            request.cancel()
            await asyncio.gather(request, return_exceptions=True)
            raise


async def _blocked(app: FastAPI, backend: str, request: asyncio.Future[Any]) -> None:
    """Until `request` waits for a row lock (it must not finish before)."""
    async with app.state.sessions() as session:
        for _ in range(int(WAIT_SECONDS / 0.05)):
            assert not request.done(), "the request finished while the lock was held"
            if (await session.scalar(text(_WAITING[backend]))) or 0:
                return
            await session.rollback()  # a fresh snapshot of the server's views
            await asyncio.sleep(0.05)
    raise AssertionError("the request never waited for the held lock")


async def _free(app: FastAPI, sql: str, **params: Any) -> bool:
    """Whether `sql` (a FOR UPDATE NOWAIT) gets its rows at once."""
    session: AsyncSession
    async with app.state.sessions() as session, session.begin():
        try:
            await session.execute(text(sql), params)
        except DBAPIError as exc:
            # PostgreSQL: "could not obtain lock on row"; MariaDB: "Lock wait timeout".
            if "lock" not in str(exc.orig).lower():
                raise
            return False
        return True


async def _bob_free_while_ann_waits(
    admin: httpx.AsyncClient,
    make_user: UserFactory,
    app: FastAPI,
    backend: str,
    path: str,
    body: dict[str, Any],
) -> httpx.Response:
    """Readers ann and bob (ann's id first): POST `body` while ann's user row is held, and
    check that bob's row stays free while the request waits for ann's. Its answer."""
    for name in ("ann", "bob"):
        await make_user(name)
    await make_template(admin)
    ann = await _id(admin, "/api/v1/users/ann")
    bob = await _id(admin, "/api/v1/users/bob")
    lock_user = "SELECT id FROM users WHERE id = :id FOR UPDATE"
    async with _waiting(app, backend, admin.post(path, json=body), lock_user, id=ann) as request:
        assert await _free(app, lock_user + " NOWAIT", id=bob)
    return await request


async def test_a_task_group_picks_every_assignee_before_writing_a_task(
    admin: httpx.AsyncClient, make_user: UserFactory, clean_app: FastAPI, backend: str
) -> None:
    """A task naming a user, then one with no assignee: the readers' pick comes first, so
    the named user's row is not share-locked (the task_users key) while the pick waits."""
    body = {
        "label": "study",
        "tasks": [
            {"template": "glandula_pinealis", "content": {"n": 1}, "users": ["bob"]},
            {"template": "glandula_pinealis", "content": {"n": 2}},
        ],
    }
    created = await _bob_free_while_ann_waits(
        admin, make_user, clean_app, backend, "/api/v1/taskgroups", body
    )
    assert created.status_code == 201, created.text
    tasks = (await admin.get("/api/v1/taskgroups/study")).json()["tasks"]
    assert len(tasks) == 2


async def test_a_task_naming_users_share_locks_their_rows_in_id_order(
    admin: httpx.AsyncClient, make_user: UserFactory, clean_app: FastAPI, backend: str
) -> None:
    """Users named in any order: their rows are share-locked in id order before the task's
    task_users rows (which take the same lock, in the order they are written)."""
    task = {"template": "glandula_pinealis", "content": {"n": 1}, "users": ["bob", "ann"]}
    created = await _bob_free_while_ann_waits(
        admin, make_user, clean_app, backend, "/api/v1/tasks", task
    )
    assert created.status_code == 201, created.text
    assert len(created.json()["users"]) == 2


async def test_replacing_members_locks_them_in_user_order_before_deleting(
    admin: httpx.AsyncClient, make_user: UserFactory, clean_app: FastAPI, backend: str
) -> None:
    """cid leaves and dan joins: the joining member's start is read with every member row
    locked in user order, and cid's row must not be taken (deleted) before ann's."""
    for name in ("ann", "bob", "cid", "dan"):
        await make_user(name)
    group = await _id(admin, (await make_group(admin, "trio", ["ann", "bob", "cid"])))
    ann = await _id(admin, "/api/v1/users/ann")
    cid = await _id(admin, "/api/v1/users/cid")
    call = admin.put("/api/v1/groups/trio", json={"members": ["ann", "bob", "dan"]})
    async with _waiting(clean_app, backend, call, LOCK_MEMBER, g=group, u=ann) as request:
        assert await _free(clean_app, LOCK_MEMBER + " NOWAIT", g=group, u=cid)
    changed = await request
    assert changed.status_code == 200, changed.text
    members = (await admin.get("/api/v1/groups/trio")).json()["members"]
    assert sorted(m["username"] for m in members) == ["ann", "bob", "dan"]


async def test_a_new_weight_locks_the_member_rows_in_group_order(
    admin: httpx.AsyncClient, make_user: UserFactory, clean_app: FastAPI, backend: str
) -> None:
    await make_user("ann")
    first = await _id(admin, await make_group(admin, "first", []))
    second = await _id(admin, await make_group(admin, "second", []))
    # Joined the later group first, so its row comes first in the table.
    for groupname in ("second", "first"):
        assert (await admin.put(f"/api/v1/groups/{groupname}/users/ann")).status_code == 200
    ann = await _id(admin, "/api/v1/users/ann")
    call = admin.put("/api/v1/users/ann", json={"assignment_weight": 2.0})
    async with _waiting(clean_app, backend, call, LOCK_MEMBER, g=first, u=ann) as request:
        assert await _free(clean_app, LOCK_MEMBER + " NOWAIT", g=second, u=ann)
    changed = await request
    assert changed.status_code == 200, changed.text
    assert changed.json()["assignment_weight"] == 2.0


async def test_a_pick_in_a_group_locks_the_members_not_their_user_rows(
    admin: httpx.AsyncClient, make_user: UserFactory, clean_app: FastAPI
) -> None:
    """A creation picking in a group and then among the readers (user rows, in id order)
    must not hold user rows taken out of that order."""
    for name in ("ann", "bob"):
        await make_user(name)
    await make_template(admin)
    group_id = int((await make_group(admin, "duo", ["ann", "bob"])).rsplit("/", 1)[-1])
    async with clean_app.state.sessions() as picker, picker.begin():
        chosen = await distribution.pick_in_group(picker, group_id, "duo")
        # The member's user row is free, while the group's member rows stay locked until
        # the pick commits.
        lock_user = "SELECT id FROM users WHERE id = :id FOR UPDATE NOWAIT"
        assert await _free(clean_app, lock_user, id=chosen[0])
        LOCK_MEMBERs = "SELECT user_id FROM group_members WHERE group_id = :g FOR UPDATE NOWAIT"
        assert not await _free(clean_app, LOCK_MEMBERs, g=group_id)


async def test_a_group_update_locks_its_members_before_writing_the_group_row(
    admin: httpx.AsyncClient, make_user: UserFactory, clean_app: FastAPI, backend: str
) -> None:
    """A creation linking a task to the group picks among its members first, then takes the
    group row (a share lock, the task_group_links key): a rename must not hold that row
    while it waits for the member rows."""
    for name in ("ann", "bob"):
        await make_user(name)
    group = await _id(admin, await make_group(admin, "duo", ["ann"]))
    ann = await _id(admin, "/api/v1/users/ann")
    call = admin.put("/api/v1/groups/duo", json={"groupname": "pair", "members": ["ann", "bob"]})
    async with _waiting(clean_app, backend, call, LOCK_MEMBER, g=group, u=ann) as request:
        lock_group = "SELECT id FROM groups WHERE id = :id FOR UPDATE NOWAIT"
        assert await _free(clean_app, lock_group, id=group)
    changed = await request
    assert changed.status_code == 200, changed.text
    members = (await admin.get("/api/v1/groups/pair")).json()["members"]
    assert sorted(m["username"] for m in members) == ["ann", "bob"]
