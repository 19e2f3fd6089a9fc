"""Deliveries in the database: made from events, claimed by one worker, finished with a record.

A worker owns a delivery while `claimed_until` lies ahead (`claimed_by` names the batch that
took it); a crashed worker's deliveries become due again when their claim runs out.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, delete, func, insert, or_, select, update
from sqlalchemy.dialects import mysql, postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from shared.delivery.plan import Subscription, plan
from shared.delivery.policy import Decision, Outcome, RetryPolicy
from shared.delivery.sender import ERROR_KEEP, RESPONSE_KEEP, Request, Result, clean
from shared.models import (
    Delivery,
    DeliveryAttempt,
    OutboxEvent,
    Task,
    TaskGroup,
    Webhook,
    utcnow,
)

log = logging.getLogger("taskmanager.deliveries")

_D = Delivery.__table__  # type: ignore[attr-defined]
_A = DeliveryAttempt.__table__  # type: ignore[attr-defined]
_W = Webhook.__table__  # type: ignore[attr-defined]
_T = Task.__table__  # type: ignore[attr-defined]
_G = TaskGroup.__table__  # type: ignore[attr-defined]
_O = OutboxEvent.__table__  # type: ignore[attr-defined]

REQUIRED = frozenset({"id", "type", "occurred_at"})
_COLUMNS = (
    _D.c.id,
    _D.c.event_id,
    _D.c.event_type,
    _D.c.webhook_id,
    _D.c.method,
    _D.c.url,
    _D.c.content_type,
    _D.c.body,
    _D.c.attempts,
    _D.c.deadline_at,
    _D.c.claimed_by,
    _D.c.claimed_until,
)


@dataclass(frozen=True)
class Claimed:
    """A delivery this worker owns until its claim runs out."""

    id: int
    event_id: str
    event_type: str
    webhook_id: int | None
    method: str
    url: str
    content_type: str
    body: str
    attempts: int
    deadline_at: datetime
    claimed_by: str
    claimed_until: datetime

    def request(self, secret: str | None) -> Request:
        return Request(
            delivery_id=self.id,
            event_id=self.event_id,
            method=self.method,
            url=self.url,
            content_type=self.content_type,
            body=self.body,
            secret=secret,
        )


def _claimed(row: Any) -> Claimed:
    return Claimed(*row)


@dataclass(frozen=True)
class Finished:
    delivery: Claimed
    result: Result
    decision: Decision
    attempted_at: datetime


class Webhooks:
    """Enabled subscriptions and every webhook's secret, reloaded whenever the table changed
    (its row count or newest update time differ), so a new subscription counts at once."""

    def __init__(self) -> None:
        self._version: tuple[Any, ...] | None = None
        self.subscriptions: list[Subscription] = []
        self.secrets: dict[int, str | None] = {}

    async def refresh(self, connection: AsyncConnection) -> None:
        version = tuple(
            (await connection.execute(select(func.count(), func.max(_W.c.update_time)))).one()
        )
        if version == self._version:
            return
        rows = (
            await connection.execute(
                select(_W.c.id, _W.c.url, _W.c.events, _W.c.secret, _W.c.enabled)
            )
        ).all()
        subscriptions = []
        secrets: dict[int, str | None] = {}
        for id_, url, events, secret, enabled in rows:
            secrets[id_] = secret if enabled else None
            if enabled:
                subscriptions.append(
                    Subscription(id=id_, url=url, patterns=tuple(json.loads(events)))
                )
        self.subscriptions, self.secrets, self._version = subscriptions, secrets, version


def new_owner(name: str) -> str:
    return f"{name[:40]}:{uuid.uuid4().hex[:16]}"


def _insert_ignoring_duplicates(dialect: str) -> Any:
    if dialect == "postgresql":
        return postgresql.insert(_D).on_conflict_do_nothing(index_elements=["event_id", "target"])
    if dialect == "sqlite":
        return sqlite.insert(_D).on_conflict_do_nothing(index_elements=["event_id", "target"])
    statement = mysql.insert(_D)
    return statement.on_duplicate_key_update(event_id=statement.inserted.event_id)


async def _callback_contents(
    connection: AsyncConnection, envelopes: list[dict[str, Any]]
) -> dict[str, str | None]:
    """The callback body of each done event with a callback, by event id.

    The body is the one stored with the event's outbox row (the subject's content when it
    was done). An event whose row is gone (published and purged after the retention time)
    or was written before rows kept it takes the subject's current content.
    """
    wanted: dict[str, tuple[str, int]] = {}
    for envelope in envelopes:
        for kind, event_type in (("task", "task.status.done"), ("taskgroup", "taskgroup.done")):
            subject = envelope.get(kind)
            if envelope.get("type") == event_type and subject and subject.get("callback_url"):
                wanted[str(envelope["id"])] = (kind, int(subject["id"]))
    if not wanted:
        return {}
    stored = await connection.execute(
        select(_O.c.event_id, _O.c.callback_content).where(
            _O.c.event_id.in_(list(wanted)), _O.c.callback_content.is_not(None)
        )
    )
    contents: dict[str, str | None] = {row[0]: row[1] for row in stored}
    for kind, table in (("task", _T), ("taskgroup", _G)):
        pending = {
            event_id: id_
            for event_id, (k, id_) in wanted.items()
            if k == kind and event_id not in contents
        }
        if pending:
            rows = await connection.execute(
                select(table.c.id, table.c.callback_content).where(
                    table.c.id.in_(set(pending.values()))
                )
            )
            current: dict[int, str | None] = {row[0]: row[1] for row in rows}
            for event_id, id_ in pending.items():
                contents[event_id] = current.get(id_)
    return contents


async def create(
    connection: AsyncConnection,
    payloads: Sequence[str],
    webhooks: Webhooks,
    owner: str,
    policy: RetryPolicy,
    claim_seconds: float,
) -> list[Claimed]:
    """Make the deliveries these events ask for, claimed by `owner`; returns those made now.

    An event seen before (a redelivered message) makes nothing new: `(event_id, target)`
    is unique and the insert skips rows that exist.
    """
    envelopes: list[tuple[dict[str, Any], str]] = []
    for payload in payloads:
        try:
            envelope = json.loads(payload)
            if not isinstance(envelope, dict) or not envelope.keys() >= REQUIRED:
                raise ValueError("not an event envelope")
            datetime.fromisoformat(envelope["occurred_at"])
            for kind in ("task", "taskgroup"):
                subject = envelope.get(kind)
                if subject is not None and not isinstance(subject.get("id"), int):
                    raise ValueError(f"no {kind} id")
        except (ValueError, TypeError, AttributeError):
            log.error("dropping a malformed event: %.200s", payload)
            continue
        envelopes.append((envelope, payload))
    if not envelopes:
        return []
    await webhooks.refresh(connection)
    contents = await _callback_contents(connection, [e for e, _ in envelopes])
    now = utcnow()
    claim = {
        "status": "pending",
        "attempts": 0,
        "next_attempt_at": now,
        "deadline_at": now + policy.give_up_after,
        "claimed_by": owner,
        "claimed_until": now + timedelta(seconds=claim_seconds),
        "created_at": now,
        "updated_at": now,
    }
    rows: list[dict[str, Any]] = []
    for envelope, payload in envelopes:
        content = contents.get(str(envelope["id"]))
        try:
            planned = plan(envelope, payload, webhooks.subscriptions, content)
        except (ValueError, TypeError, KeyError, AttributeError):
            log.error("dropping an event that cannot be planned: %.200s", payload)
            continue
        for row in planned:
            row.update(claim)
        rows.extend(planned)
    if not rows:
        return []
    dialect = connection.dialect.name
    statement = _insert_ignoring_duplicates(dialect)
    if dialect not in _RETURNING:
        # MariaDB: no RETURNING with ON DUPLICATE KEY UPDATE. Rows made now carry this
        # batch's owner; those that existed keep theirs.
        await connection.execute(statement, rows)
        made = await connection.execute(
            select(*_COLUMNS).where(
                _D.c.event_id.in_({row["event_id"] for row in rows}), _D.c.claimed_by == owner
            )
        )
        return [_claimed(row) for row in made]
    # ON CONFLICT DO NOTHING RETURNING returns exactly the rows this statement inserted:
    # those made now, not those an earlier delivery of the same event made.
    inserted = await connection.execute(
        statement.returning(_D.c.id, _D.c.event_id, _D.c.target), rows
    )
    by_key = {(row["event_id"], row["target"]): row for row in rows}
    return [_made(id_, by_key[(event_id, target)]) for id_, event_id, target in inserted]


_RETURNING = frozenset({"postgresql", "sqlite"})


def _made(id_: int, row: dict[str, Any]) -> Claimed:
    """The delivery just inserted from `row`, as a read-back would give it."""
    return Claimed(
        id_,
        row["event_id"],
        row["event_type"],
        row["webhook_id"],
        row["method"],
        row["url"],
        row["content_type"],
        row["body"],
        row["attempts"],
        row["deadline_at"],
        row["claimed_by"],
        row["claimed_until"],
    )


async def claim_due(
    connection: AsyncConnection, owner: str, limit: int, claim_seconds: float, webhooks: Webhooks
) -> list[Claimed]:
    """Take up to `limit` deliveries whose next attempt is due and that nobody owns."""
    now = utcnow()
    due = (
        _D.c.status == "pending",
        _D.c.next_attempt_at <= now,
        or_(_D.c.claimed_until.is_(None), _D.c.claimed_until < now),
    )
    query = select(_D.c.id).where(*due).order_by(_D.c.next_attempt_at).limit(limit)
    if connection.dialect.name != "sqlite":
        query = query.with_for_update(skip_locked=True)
    ids = list((await connection.scalars(query)).all())
    if not ids:
        return []
    await webhooks.refresh(connection)
    await connection.execute(
        update(_D)
        .where(_D.c.id.in_(ids), *due)
        .values(claimed_by=owner, claimed_until=now + timedelta(seconds=claim_seconds))
    )
    rows = await connection.execute(
        select(*_COLUMNS).where(_D.c.id.in_(ids), _D.c.claimed_by == owner)
    )
    return [_claimed(row) for row in rows]


_FINISH = (
    update(_D)
    .where(_D.c.id == bindparam("d_id"), _D.c.claimed_by == bindparam("d_owner"))
    .values(
        status=bindparam("d_status"),
        attempts=_D.c.attempts + 1,
        next_attempt_at=bindparam("d_next"),
        last_status_code=bindparam("d_code"),
        last_error=bindparam("d_error"),
        delivered_at=bindparam("d_delivered"),
        claimed_by=None,
        claimed_until=None,
        updated_at=bindparam("d_now"),
    )
)


async def finish(connection: AsyncConnection, finished: Sequence[Finished]) -> None:
    """Record the attempts and what comes next, in one transaction for the batch."""
    if not finished:
        return
    now = utcnow()
    await connection.execute(
        insert(_A),
        [
            {
                "delivery_id": f.delivery.id,
                "attempted_at": f.attempted_at,
                "duration_ms": round(f.result.duration_ms, 3),
                "status_code": f.result.status_code,
                "error": clean(f.result.error, ERROR_KEEP) if f.result.error else None,
                "response": clean(f.result.response, RESPONSE_KEEP) if f.result.response else None,
            }
            for f in finished
        ],
    )
    updates = []
    for f in finished:
        outcome = f.decision.outcome
        updates.append(
            {
                "d_id": f.delivery.id,
                "d_owner": f.delivery.claimed_by,
                "d_status": "pending" if outcome is Outcome.retry else outcome.value,
                "d_next": f.decision.next_attempt_at,
                "d_code": f.result.status_code,
                "d_error": clean(f.decision.reason or f.result.error or "", ERROR_KEEP) or None
                if outcome is not Outcome.delivered
                else None,
                "d_delivered": now if outcome is Outcome.delivered else None,
                "d_now": now,
            }
        )
    await connection.execute(_FINISH, updates)


async def release(connection: AsyncConnection, deliveries: Sequence[Claimed]) -> None:
    """Give back claims that will not be worked on (shutting down), so others take them now."""
    for owner in {d.claimed_by for d in deliveries}:
        await connection.execute(
            update(_D)
            .where(_D.c.id.in_([d.id for d in deliveries if d.claimed_by == owner]))
            .where(_D.c.claimed_by == owner)
            .values(claimed_by=None, claimed_until=None)
        )


async def purge_delivered(connection: AsyncConnection, before: datetime, batch: int = 1000) -> int:
    """Delete deliveries delivered before `before`, with their attempts; returns how many.

    Failed and pending deliveries stay, whatever their age: an admin may still retry them.
    Deleted `batch` at a time, so no statement holds many rows at once.
    """
    deleted = 0
    while True:
        ids = list(
            (
                await connection.scalars(
                    select(_D.c.id)
                    .where(_D.c.status == "delivered", _D.c.delivered_at < before)
                    .order_by(_D.c.id)
                    .limit(batch)
                )
            ).all()
        )
        if not ids:
            return deleted
        await connection.execute(delete(_A).where(_A.c.delivery_id.in_(ids)))
        await connection.execute(delete(_D).where(_D.c.id.in_(ids)))
        deleted += len(ids)
