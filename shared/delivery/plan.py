"""What one event asks to send: pure functions from the envelope to delivery rows."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

JSON_TYPE = "application/json"
TEXT_TYPE = "text/plain; charset=utf-8"
CALLBACK_EVENTS = {"task.status.done": "callback", "taskgroup.done": "taskgroup_callback"}


@dataclass(frozen=True)
class Subscription:
    """An enabled webhook, as the planner needs it."""

    id: int
    url: str
    patterns: tuple[str, ...]


def topic_matches(pattern: str, routing_key: str) -> bool:
    """Does an AMQP topic pattern match a routing key (as RabbitMQ decides)?

    Dynamic programming over (pattern word, key word): linear in their product, whatever
    the pattern (a backtracking matcher takes exponential time on `#.#.#...`)."""
    words = routing_key.split(".")
    # reachable[j]: the pattern read so far can match the first j words of the key.
    reachable = [True] + [False] * len(words)
    for part in pattern.split("."):
        if part == "#":
            for j in range(1, len(words) + 1):
                reachable[j] = reachable[j] or reachable[j - 1]
        else:
            reachable = [False] + [
                reachable[j] and (part == "*" or part == words[j]) for j in range(len(words))
            ]
    return reachable[len(words)]


def _not_json(constant: str) -> None:
    # Python's parser takes NaN and Infinity; JSON (and the receivers) do not.
    raise ValueError(constant)


def callback_body(content: str | None) -> tuple[str, str]:
    """(body, content type): JSON when the content parses as JSON, else text."""
    if content is None:
        return "", TEXT_TYPE
    try:
        json.loads(content, parse_constant=_not_json)
    except ValueError:
        return content, TEXT_TYPE
    return content, JSON_TYPE


def plan(
    envelope: dict[str, Any],
    payload: str,
    subscriptions: list[Subscription],
    callback_content: str | None,
) -> list[dict[str, Any]]:
    """The deliveries one event makes: its callback (a task done, a task group done) and one
    POST per matching webhook. Rows without status, claim or timing columns."""
    event_type = str(envelope["type"])
    subject = envelope.get("task") or envelope.get("taskgroup") or {}
    common = {
        "event_id": envelope["id"],
        "event_type": event_type,
        "task_id": subject.get("id") if "task" in envelope else None,
        "taskgroup_id": subject.get("id") if "taskgroup" in envelope else None,
        "occurred_at": datetime.fromisoformat(envelope["occurred_at"]),
    }
    rows: list[dict[str, Any]] = []
    target = CALLBACK_EVENTS.get(event_type)
    url = subject.get("callback_url")
    if target and url:
        body, content_type = callback_body(callback_content)
        rows.append(
            common
            | {
                "target": target,
                "webhook_id": None,
                "method": "PUT",
                "url": url,
                "content_type": content_type,
                "body": body,
            }
        )
    for subscription in subscriptions:
        if any(topic_matches(pattern, event_type) for pattern in subscription.patterns):
            rows.append(
                common
                | {
                    "target": f"webhook:{subscription.id}",
                    "webhook_id": subscription.id,
                    "method": "POST",
                    "url": subscription.url,
                    "content_type": JSON_TYPE,
                    "body": payload,
                }
            )
    return rows
