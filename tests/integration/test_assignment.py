"""Assignment under load, on every database: claims, pull shares, push shares."""

from __future__ import annotations

import asyncio
from collections import Counter

import httpx
from fastapi import FastAPI

from tests.api.helpers import events, make_group, make_template
from tests.conftest import UserFactory


def _items(n: int, **extra: object) -> list[dict[str, object]]:
    return [
        {"template": "glandula_pinealis", "content": {"n": i}, "tracking_id": f"T{i}", **extra}
        for i in range(n)
    ]


async def _bulk(admin: httpx.AsyncClient, items: list[dict[str, object]]) -> None:
    for start in range(0, len(items), 5000):
        r = await admin.post("/api/v1/tasks/bulk", json={"tasks": items[start : start + 5000]})
        assert r.status_code == 201, r.text


async def test_32_claimers_drain_2000_tasks_each_exactly_once(
    admin: httpx.AsyncClient, make_user: UserFactory, clean_app: FastAPI
) -> None:
    readers = [await make_user(f"reader{i:02d}") for i in range(32)]
    await make_template(admin)
    await make_group(admin, "pool", [f"reader{i:02d}" for i in range(32)])
    await _bulk(admin, _items(2000, groups=["pool"]))

    claimed: list[int] = []

    async def drain(client: httpx.AsyncClient) -> None:
        while True:
            r = await client.post("/api/v1/tasks/claim")
            if r.status_code == 204:
                return
            assert r.status_code == 200, r.text
            task = r.json()
            claimed.append(task["id"])
            done = await client.put(task["uri"], json={"status": "done"})
            assert done.status_code == 200, done.text

    await asyncio.gather(*(drain(c) for c in readers))

    twice = [task_id for task_id, n in Counter(claimed).items() if n > 1]
    assert twice == []
    assert len(claimed) == 2000
    left = await admin.get("/api/v1/tasks", params={"scope": "all", "status": "queued"})
    assert left.json()["total_tasks"] == 0
    done = await admin.get("/api/v1/tasks", params={"scope": "all", "status": "done", "limit": 1})
    assert done.json()["total_tasks"] == 2000
    locked = Counter(e.task_id for e in await events(clean_app) if e.type == "task.locked")
    assert len(locked) == 2000
    assert set(locked.values()) == {1}


async def test_pull_shares_follow_weights_and_are_stable(
    admin: httpx.AsyncClient, make_user: UserFactory
) -> None:
    weights = {"w10": 0.1, "w30": 0.3, "w60": 0.6, "w100": 1.0}
    clients = {name: await make_user(name, weight=w) for name, w in weights.items()}
    await make_template(admin)
    await make_group(admin, "cohort", list(weights))
    await _bulk(admin, _items(10_000, groups=["cohort"]))

    seen: dict[str, set[int]] = {}
    for name, client in clients.items():
        first = (await client.get("/api/v1/tasks")).json()
        second = (await client.get("/api/v1/tasks")).json()
        ids = {t["id"] for t in first["tasks"]}
        assert ids == {t["id"] for t in second["tasks"]}, "the visible set must be stable"
        assert first["total_tasks"] == len(ids)
        seen[name] = ids
        share = len(ids) / 10_000
        assert abs(share - weights[name]) <= 0.02, (name, share)
    # The coordinator's view of the group shows the same shares.
    group = (await admin.get("/api/v1/groups/cohort")).json()
    assert group["queued_tasks"] == 10_000
    shown = {m["username"]: m["visible_queued_tasks"] for m in group["members"]}
    assert shown == {name: len(ids) for name, ids in seen.items()}
    # Shares nest: a smaller weight sees a subset of what a larger one sees.
    assert seen["w10"] <= seen["w30"] <= seen["w60"] <= seen["w100"]
    # Claims obey the same rule, oldest first: a claim that ignored the weight would take
    # a task outside w10's tenth almost every time.
    claimed = []
    for _ in range(20):
        r = await clients["w10"].post("/api/v1/tasks/claim")
        assert r.status_code == 200, r.text
        claimed.append(r.json()["id"])
        done = await clients["w10"].put(r.json()["uri"], json={"status": "done"})
        assert done.status_code == 200, done.text
    assert claimed == sorted(seen["w10"])[:20]


async def test_no_task_is_orphaned_when_weights_sum_below_one(
    admin: httpx.AsyncClient, make_user: UserFactory
) -> None:
    a = await make_user("a", weight=0.1)
    b = await make_user("b", weight=0.2)
    idle = await make_user("idle", weight=0.0)
    await make_template(admin)
    await make_group(admin, "thin", ["a", "b", "idle"])
    await _bulk(admin, _items(2000, groups=["thin"]))
    seen_a = {t["id"] for t in (await a.get("/api/v1/tasks")).json()["tasks"]}
    seen_b = {t["id"] for t in (await b.get("/api/v1/tasks")).json()["tasks"]}
    everything = {
        t["id"] for t in (await admin.get("/api/v1/tasks", params={"scope": "all"})).json()["tasks"]
    }
    assert seen_a | seen_b == everything
    # b (the largest weight) sees everything: its 20 % and all beyond every share;
    # a sees its 10 % and the 80 % beyond every share.
    assert seen_b == everything
    assert 0.9 - 0.03 <= len(seen_a) / 2000 <= 0.9 + 0.03
    # Weight 0 sees and claims nothing.
    assert (await idle.get("/api/v1/tasks")).json()["total_tasks"] == 0
    assert (await idle.post("/api/v1/tasks/claim")).status_code == 204
    # The coordinator's view counts the tasks beyond every share for each member above 0.
    group = (await admin.get("/api/v1/groups/thin")).json()
    shown = {m["username"]: m["visible_queued_tasks"] for m in group["members"]}
    assert shown == {"a": len(seen_a), "b": len(seen_b), "idle": 0}


async def test_push_shares_1_2_3_with_8_concurrent_clients(
    admin: httpx.AsyncClient, make_user: UserFactory, clean_app: FastAPI
) -> None:
    for name, weight in (("w1", 1), ("w2", 2), ("w3", 3)):
        await make_user(name, weight=weight)
    await make_template(admin)
    await make_group(admin, "trio", ["w1", "w2", "w3"])

    async def create(worker: int) -> None:
        for i in range(125):
            r = await admin.post(
                "/api/v1/tasks",
                json={
                    "template": "glandula_pinealis",
                    "content": {"worker": worker, "i": i},
                    "distribute_in_group": "trio",
                },
            )
            assert r.status_code == 201, r.text

    await asyncio.gather(*(create(w) for w in range(8)))
    counts = []
    for name in ("w1", "w2", "w3"):
        r = await admin.get("/api/v1/tasks", params={"user": name, "limit": 1})
        counts.append(r.json()["total_tasks"])
    assert sum(counts) == 1000
    expected = [1000 / 6, 2000 / 6, 3000 / 6]
    assert all(abs(c - e) <= 1 for c, e in zip(counts, expected, strict=True)), counts


async def _pushed(admin: httpx.AsyncClient, names: list[str]) -> list[int]:
    counts = []
    for name in names:
        r = await admin.get("/api/v1/tasks", params={"user": name, "limit": 1})
        counts.append(r.json()["total_tasks"])
    return counts


async def _distribute(admin: httpx.AsyncClient, group: str, n: int, start: int) -> None:
    items: list[dict[str, object]] = [
        {"template": "glandula_pinealis", "content": {"n": i}, "distribute_in_group": group}
        for i in range(start, start + n)
    ]
    await _bulk(admin, items)


async def test_push_newcomer_takes_its_share_from_then_on(
    admin: httpx.AsyncClient, make_user: UserFactory
) -> None:
    for name in ("p1", "p2", "late"):
        await make_user(name)
    await make_template(admin)
    await make_group(admin, "duo", ["p1", "p2"])
    await _distribute(admin, "duo", 100, 0)
    assert await _pushed(admin, ["p1", "p2", "late"]) == [50, 50, 0]
    # A member who joins late is not owed the 50 tasks the others took before it came.
    r = await admin.put("/api/v1/groups/duo/users/late")
    assert r.status_code == 200, r.text
    await _distribute(admin, "duo", 30, 100)
    after = await _pushed(admin, ["p1", "p2", "late"])
    assert all(abs(got - 10) <= 1 for got in (after[0] - 50, after[1] - 50, after[2])), after
    # The same for members given with the whole list, and for a member back from inactivity.
    await make_user("later")
    r = await admin.put("/api/v1/groups/duo", json={"members": ["p1", "p2", "late", "later"]})
    assert r.status_code == 200, r.text
    assert (await admin.put("/api/v1/users/p1", json={"active": False})).status_code == 200
    await _distribute(admin, "duo", 30, 130)
    assert (await admin.put("/api/v1/users/p1", json={"active": True})).status_code == 200
    before = await _pushed(admin, ["p1", "p2", "late", "later"])
    assert before[0] == after[0]
    await _distribute(admin, "duo", 40, 160)
    now = await _pushed(admin, ["p1", "p2", "late", "later"])
    gained = [n - b for n, b in zip(now, before, strict=True)]
    assert all(abs(g - 10) <= 1 for g in gained), gained


async def test_push_weight_change_keeps_the_rotation_proportional(
    admin: httpx.AsyncClient, make_user: UserFactory
) -> None:
    for name in ("q1", "q2"):
        await make_user(name)
    await make_template(admin)
    await make_group(admin, "pair", ["q1", "q2"])
    await _distribute(admin, "pair", 90, 0)
    assert await _pushed(admin, ["q1", "q2"]) == [45, 45]
    # Weight 2 from now on: two of every three new tasks, not a catch-up burst either way.
    r = await admin.put("/api/v1/users/q1", json={"assignment_weight": 2})
    assert r.status_code == 200, r.text
    await _distribute(admin, "pair", 90, 90)
    q1, q2 = await _pushed(admin, ["q1", "q2"])
    assert abs(q1 - 45 - 60) <= 1, (q1, q2)
    assert abs(q2 - 45 - 30) <= 1, (q1, q2)
    # Away at weight 0 (q1 takes everything meanwhile), then back: an even split
    # from then on (both at weight 2), not every task until q2 made up for its absence.
    assert (await admin.put("/api/v1/users/q2", json={"assignment_weight": 0})).status_code == 200
    await _distribute(admin, "pair", 30, 180)
    assert await _pushed(admin, ["q1", "q2"]) == [q1 + 30, q2]
    assert (await admin.put("/api/v1/users/q2", json={"assignment_weight": 2})).status_code == 200
    await _distribute(admin, "pair", 40, 210)
    q1b, q2b = await _pushed(admin, ["q1", "q2"])
    assert abs(q1b - q1 - 30 - 20) <= 1, (q1b, q2b)
    assert abs(q2b - q2 - 20) <= 1, (q1b, q2b)


async def test_unassigned_tasks_reach_a_new_reader_at_its_share(
    admin: httpx.AsyncClient, make_user: UserFactory
) -> None:
    # Tasks with no assignee go to the readers (role `user`); the admin is none.
    await make_user("r1")
    await make_template(admin)
    plain: list[dict[str, object]] = [
        {"template": "glandula_pinealis", "content": {"n": i}} for i in range(40)
    ]
    await _bulk(admin, plain)
    assert await _pushed(admin, ["r1"]) == [40]
    await make_user("r2")
    await _bulk(admin, [{"template": "glandula_pinealis", "content": {"m": i}} for i in range(20)])
    r1, r2 = await _pushed(admin, ["r1", "r2"])
    assert abs(r1 - 40 - 10) <= 1, (r1, r2)
    assert abs(r2 - 10) <= 1, (r1, r2)
    # A user given the reader role later starts where the readers are, too.
    await make_user("r3", roles=())
    assert (await admin.put("/api/v1/users/r3/roles/user")).status_code == 200
    await _bulk(admin, [{"template": "glandula_pinealis", "content": {"k": i}} for i in range(30)])
    after = await _pushed(admin, ["r1", "r2", "r3"])
    gained = [after[0] - r1, after[1] - r2, after[2]]
    assert all(abs(g - 10) <= 1 for g in gained), gained
