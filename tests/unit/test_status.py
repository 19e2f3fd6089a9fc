"""The task status state machine (SPEC section 2) and the task-group status (section 4)."""

from __future__ import annotations

from itertools import product

import pytest

from shared.status import TaskStatus, Transition, classify, event_type_for, taskgroup_status

Q, L, D, A, F = (
    TaskStatus.queued,
    TaskStatus.locked,
    TaskStatus.done,
    TaskStatus.aborted,
    TaskStatus.failed,
)

# Every (from, to) pair: the kind of transition and the event it emits; None = forbidden.
TABLE: dict[tuple[TaskStatus, TaskStatus], tuple[Transition | None, str | None]] = {
    (Q, Q): (Transition.none, None),
    (Q, L): (Transition.lock, "task.locked"),
    (Q, D): (Transition.end, "task.status.done"),
    (Q, A): (Transition.end, "task.status.aborted"),
    (Q, F): (Transition.end, "task.status.failed"),
    (L, Q): (Transition.unlock, "task.unlocked"),
    (L, L): (Transition.none, None),
    (L, D): (Transition.end, "task.status.done"),
    (L, A): (Transition.end, "task.status.aborted"),
    (L, F): (Transition.end, "task.status.failed"),
    (D, Q): (Transition.reopen, "task.status.queued"),
    (D, L): (None, None),
    (D, D): (Transition.none, None),
    (D, A): (Transition.reopen, "task.status.aborted"),
    (D, F): (Transition.reopen, "task.status.failed"),
    (A, Q): (Transition.reopen, "task.status.queued"),
    (A, L): (None, None),
    (A, D): (Transition.reopen, "task.status.done"),
    (A, A): (Transition.none, None),
    (A, F): (Transition.reopen, "task.status.failed"),
    (F, Q): (Transition.reopen, "task.status.queued"),
    (F, L): (None, None),
    (F, D): (Transition.reopen, "task.status.done"),
    (F, A): (Transition.reopen, "task.status.aborted"),
    (F, F): (Transition.none, None),
}


def test_table_covers_every_pair() -> None:
    assert set(TABLE) == set(product(TaskStatus, TaskStatus))


@pytest.mark.parametrize(("current", "target"), list(TABLE), ids=lambda s: s.value)
def test_classify(current: TaskStatus, target: TaskStatus) -> None:
    assert classify(current, target) == TABLE[current, target][0]


@pytest.mark.parametrize(("current", "target"), list(TABLE), ids=lambda s: s.value)
def test_event_type_for(current: TaskStatus, target: TaskStatus) -> None:
    assert event_type_for(current, target) == TABLE[current, target][1]


def test_statuses_are_the_five_of_the_spec() -> None:
    assert [s.value for s in TaskStatus] == ["queued", "locked", "done", "aborted", "failed"]


def test_a_lease_renewal_or_repeated_status_emits_nothing() -> None:
    for status in TaskStatus:
        assert event_type_for(status, status) is None


def test_a_move_to_queued_is_reported_as_queued_only_for_a_reopen() -> None:
    assert event_type_for(L, Q) == "task.unlocked"
    for ended in (D, A, F):
        assert event_type_for(ended, Q) == "task.status.queued"


def _expected_group_status(statuses: tuple[TaskStatus, ...]) -> str:
    # SPEC section 4, sentence by sentence.
    if A in statuses:
        return "aborted"
    if F in statuses:
        return "failed"
    if all(s == D for s in statuses):
        return "done"
    return "queued"


@pytest.mark.parametrize(
    "statuses",
    [(s,) for s in TaskStatus] + list(product(TaskStatus, TaskStatus)),
    ids=lambda s: "+".join(x.value for x in s),
)
def test_taskgroup_status_for_every_pair(statuses: tuple[TaskStatus, ...]) -> None:
    assert taskgroup_status([s.value for s in statuses]) == _expected_group_status(statuses)


@pytest.mark.parametrize(
    ("statuses", "expected"),
    [
        (["done", "done", "done"], "done"),
        (["done", "done", "locked"], "queued"),
        (["done", "failed", "aborted"], "aborted"),
        (["failed", "done", "queued"], "failed"),
        (["queued", "locked"], "queued"),
    ],
)
def test_taskgroup_status_examples(statuses: list[str], expected: str) -> None:
    assert taskgroup_status(statuses) == expected


def test_an_empty_taskgroup_is_not_done() -> None:
    # Only done calls back; a group without tasks has nothing to call back about.
    assert taskgroup_status([]) == "queued"
