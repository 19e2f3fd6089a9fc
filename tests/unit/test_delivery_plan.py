"""Planning deliveries: topic patterns, callback bodies, and the rows one event makes."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import pytest

from shared.delivery.plan import Subscription, callback_body, plan, topic_matches
from shared.events.outbox import event_values
from shared.events.topology import EVENT_TYPES

CALLBACK_URL = "https://xnat.example.org/data/services/callback?task=17"
GROUP_CALLBACK_URL = "https://syncotron.example.org/groups/4/done"


# --- topic patterns (RabbitMQ topic exchange semantics) ---------------------------------


@pytest.mark.parametrize(
    ("pattern", "key"),
    [
        ("task.#", "task.created"),
        ("task.#", "task.status.done"),
        ("task.#", "task"),
        ("task.*", "task.created"),
        ("task.*", "task.deleted"),
        ("#", "task.created"),
        ("#", "task.status.done"),
        ("#", "taskgroup.done"),
        ("#", "task"),
        ("*.status.*", "task.status.done"),
        ("*.status.*", "task.status.aborted"),
        ("task.status.done", "task.status.done"),
        ("#.done", "task.status.done"),
        ("#.done", "taskgroup.done"),
        ("#.done", "done"),
        ("task.#.done", "task.status.done"),
        ("task.#.done", "task.done"),
        ("task.*.*", "task.status.done"),
        ("*.*", "task.created"),
        ("*", "task"),
        ("#.#", "task.status.done"),
        ("#.*", "task"),
        ("task.status.#", "task.status.queued"),
        ("taskgroup.#", "taskgroup.aborted"),
        ("*.#", "task.created"),
    ],
)
def test_a_pattern_matches(pattern: str, key: str) -> None:
    assert topic_matches(pattern, key)


@pytest.mark.parametrize(
    ("pattern", "key"),
    [
        ("task.*", "task.status.done"),
        ("task.*", "task"),
        ("taskgroup.#", "task.created"),
        ("task.#", "taskgroup.done"),
        ("*.status.*", "task.created"),
        ("*.status.*", "task.status"),
        ("*.status.*", "task.status.done.late"),
        ("task.status.done", "task.status.aborted"),
        ("task.status.done", "task.status"),
        ("task.status", "task.status.done"),
        ("#.done", "task.status.aborted"),
        ("#.done", "task.done.later"),
        ("*", "task.created"),
        ("*.*", "task"),
        ("task.*.*", "task.created"),
        ("task.#.done", "task.status.aborted"),
        # A wildcard is a whole word, never part of one; words are case-sensitive.
        ("task.c*", "task.created"),
        ("task*", "task.created"),
        ("task.#", "tasks.created"),
        ("Task.#", "task.created"),
        ("task.CREATED", "task.created"),
    ],
)
def test_a_pattern_does_not_match(pattern: str, key: str) -> None:
    assert not topic_matches(pattern, key)


def test_hash_matches_every_event_type() -> None:
    types = EVENT_TYPES
    assert all(topic_matches("#", key) for key in types)
    assert [key for key in types if topic_matches("task.status.*", key)] == [
        "task.status.done",
        "task.status.aborted",
        "task.status.failed",
        "task.status.queued",
    ]
    assert [key for key in types if topic_matches("#.done", key)] == [
        "task.status.done",
        "taskgroup.done",
    ]


# --- callback bodies --------------------------------------------------------------------


@pytest.mark.parametrize(
    "content",
    ['{"status": "done", "score": 3}', "[1, 2, 3]", '"text in quotes"', "42", "true", "null"],
)
def test_json_content_is_sent_as_json_unchanged(content: str) -> None:
    body, content_type = callback_body(content)
    assert body == content
    assert content_type.split(";")[0].strip() == "application/json"


def test_json_content_keeps_its_exact_bytes() -> None:
    content = '{ "b" : 2,\n  "a": [1,  2] }'
    body, content_type = callback_body(content)
    assert body == content
    assert content_type.startswith("application/json")


@pytest.mark.parametrize(
    "content", ["done", "{not json", "<result>ok</result>", "a=1&b=2", "", "  ", "ünïcödé"]
)
def test_other_content_is_sent_as_text(content: str) -> None:
    body, content_type = callback_body(content)
    assert body == content
    assert content_type.split(";")[0].strip() == "text/plain"


def test_no_content_is_an_empty_text_body() -> None:
    body, content_type = callback_body(None)
    assert body == ""
    assert content_type.split(";")[0].strip() == "text/plain"


# --- the rows one event makes -----------------------------------------------------------


def task_snapshot(task_id: int = 17, callback_url: str | None = CALLBACK_URL) -> dict[str, Any]:
    return {
        "id": task_id,
        "uri": f"/api/v1/tasks/{task_id}",
        "project": "sandbox",
        "template": "qa",
        "status": "done",
        "previous_status": "locked",
        "lock_holder": None,
        "lock_version": 3,
        "tags": ["a", "b"],
        "tracking_id": "trk-1",
        "callback_url": callback_url,
        "taskgroup_id": 4,
    }


def group_snapshot(
    group_id: int = 4, callback_url: str | None = GROUP_CALLBACK_URL
) -> dict[str, Any]:
    return {"id": group_id, "label": "batch 4", "status": "done", "callback_url": callback_url}


def task_event(event_type: str, **snapshot: Any) -> tuple[dict[str, Any], str]:
    snap = task_snapshot(**snapshot)
    row = event_values(event_type, actor="alice", snapshot=snap, task_id=snap["id"], sequence=5)
    return json.loads(row["payload"]), row["payload"]


def group_event(event_type: str, **snapshot: Any) -> tuple[dict[str, Any], str]:
    snap = group_snapshot(**snapshot)
    row = event_values(event_type, actor=None, snapshot=snap, taskgroup_id=snap["id"])
    return json.loads(row["payload"]), row["payload"]


def test_a_done_task_with_a_callback_url_makes_one_put_with_its_content() -> None:
    envelope, payload = task_event("task.status.done")
    content = '{"xnat": "finished"}'
    rows = plan(envelope, payload, [], content)
    assert len(rows) == 1
    (row,) = rows
    assert row["target"] == "callback"
    assert row["method"] == "PUT"
    assert row["url"] == CALLBACK_URL
    assert row["body"] == content
    assert row["content_type"].startswith("application/json")
    assert row["webhook_id"] is None
    assert row["event_id"] == envelope["id"]
    assert row["event_type"] == "task.status.done"
    assert row["task_id"] == 17
    assert row["taskgroup_id"] is None
    assert row["occurred_at"] == datetime.fromisoformat(envelope["occurred_at"])
    assert row["occurred_at"].tzinfo is not None


def test_a_done_task_with_text_content_calls_back_with_text() -> None:
    envelope, payload = task_event("task.status.done")
    (row,) = plan(envelope, payload, [], "finished")
    assert row["body"] == "finished"
    assert row["content_type"].startswith("text/plain")


def test_a_done_task_without_content_calls_back_with_an_empty_body() -> None:
    envelope, payload = task_event("task.status.done")
    (row,) = plan(envelope, payload, [], None)
    assert row["method"] == "PUT"
    assert row["body"] == ""
    assert row["content_type"].startswith("text/plain")


@pytest.mark.parametrize("url", [None, ""])
def test_a_done_task_without_a_callback_url_makes_nothing(url: str | None) -> None:
    envelope, payload = task_event("task.status.done", callback_url=url)
    assert plan(envelope, payload, [], '{"a": 1}') == []


@pytest.mark.parametrize(
    "event_type",
    [
        "task.status.aborted",
        "task.status.failed",
        "task.status.queued",
        "task.created",
        "task.updated",
        "task.locked",
        "task.unlocked",
        "task.lock_expired",
        "task.deleted",
    ],
)
def test_only_done_calls_a_task_back(event_type: str) -> None:
    envelope, payload = task_event(event_type)
    assert plan(envelope, payload, [], '{"a": 1}') == []


def test_a_done_task_group_calls_its_group_callback() -> None:
    envelope, payload = group_event("taskgroup.done")
    (row,) = plan(envelope, payload, [], '{"group": 4}')
    assert row["target"] == "taskgroup_callback"
    assert row["method"] == "PUT"
    assert row["url"] == GROUP_CALLBACK_URL
    assert row["body"] == '{"group": 4}'
    assert row["content_type"].startswith("application/json")
    assert row["taskgroup_id"] == 4
    assert row["task_id"] is None
    assert row["event_id"] == envelope["id"]
    assert row["event_type"] == "taskgroup.done"


def test_an_aborted_task_group_calls_nobody_back() -> None:
    envelope, payload = group_event("taskgroup.aborted")
    assert plan(envelope, payload, [], '{"group": 4}') == []


def test_a_done_task_group_without_a_callback_url_makes_nothing() -> None:
    envelope, payload = group_event("taskgroup.done", callback_url=None)
    assert plan(envelope, payload, [], "x") == []


SUBSCRIPTIONS = [
    Subscription(id=1, url="https://hooks.example.org/all-tasks", patterns=("task.#",)),
    Subscription(id=2, url="https://hooks.example.org/groups", patterns=("taskgroup.#",)),
    Subscription(id=3, url="https://hooks.example.org/ends", patterns=("task.status.*", "#")),
    Subscription(id=4, url="https://hooks.example.org/created", patterns=("task.created",)),
    Subscription(id=5, url="https://hooks.example.org/none", patterns=()),
]


def test_webhooks_make_one_post_per_matching_subscription() -> None:
    envelope, payload = task_event("task.status.aborted")
    rows = plan(envelope, payload, SUBSCRIPTIONS, "ignored")
    assert [row["target"] for row in rows] == ["webhook:1", "webhook:3"]
    for row, subscription in zip(rows, (SUBSCRIPTIONS[0], SUBSCRIPTIONS[2]), strict=True):
        assert row["webhook_id"] == subscription.id
        assert row["method"] == "POST"
        assert row["url"] == subscription.url
        assert row["body"] == payload
        assert json.loads(row["body"]) == envelope
        assert row["content_type"].startswith("application/json")
        assert row["event_id"] == envelope["id"]
        assert row["event_type"] == "task.status.aborted"
        assert row["task_id"] == 17
        assert row["taskgroup_id"] is None


def test_a_subscription_matching_twice_gets_one_post() -> None:
    envelope, payload = task_event("task.status.done", callback_url=None)
    both = Subscription(id=9, url="https://hooks.example.org/x", patterns=("#", "task.#"))
    rows = plan(envelope, payload, [both], None)
    assert [row["target"] for row in rows] == ["webhook:9"]


def test_a_done_task_makes_its_callback_and_its_webhooks() -> None:
    envelope, payload = task_event("task.status.done")
    rows = plan(envelope, payload, SUBSCRIPTIONS, '{"ok": true}')
    assert [row["target"] for row in rows] == ["callback", "webhook:1", "webhook:3"]
    assert {row["event_id"] for row in rows} == {envelope["id"]}
    callback, *hooks = rows
    assert callback["body"] == '{"ok": true}'
    assert all(hook["body"] == payload for hook in hooks)


def test_a_task_group_event_goes_to_group_subscriptions() -> None:
    envelope, payload = group_event("taskgroup.done")
    rows = plan(envelope, payload, SUBSCRIPTIONS, None)
    assert [row["target"] for row in rows] == ["taskgroup_callback", "webhook:2", "webhook:3"]
    assert all(row["taskgroup_id"] == 4 and row["task_id"] is None for row in rows)
    assert rows[1]["body"] == payload


def test_non_matching_subscriptions_make_nothing() -> None:
    envelope, payload = task_event("task.updated")
    only = [SUBSCRIPTIONS[1], SUBSCRIPTIONS[3], SUBSCRIPTIONS[4]]
    assert plan(envelope, payload, only, '{"a": 1}') == []


def test_no_subscriptions_and_no_callback_make_nothing() -> None:
    envelope, payload = task_event("task.created")
    assert plan(envelope, payload, [], None) == []


def test_nan_and_infinity_are_not_json() -> None:
    from shared.delivery.plan import TEXT_TYPE, callback_body

    assert callback_body("NaN") == ("NaN", TEXT_TYPE)
    assert callback_body('{"x": Infinity}') == ('{"x": Infinity}', TEXT_TYPE)


def test_a_pattern_of_many_hashes_is_matched_in_linear_time() -> None:
    import time

    from shared.delivery.plan import topic_matches

    started = time.perf_counter()
    assert not topic_matches(".".join(["#"] * 120 + ["x"]), "task.status.done")
    assert topic_matches(".".join(["#"] * 120 + ["done"]), "task.status.done")
    assert time.perf_counter() - started < 1.0
