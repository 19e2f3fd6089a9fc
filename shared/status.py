"""The task status state machine, as pure functions."""

from __future__ import annotations

from enum import StrEnum


class TaskStatus(StrEnum):
    queued = "queued"
    locked = "locked"
    done = "done"
    aborted = "aborted"
    failed = "failed"


END_STATES = frozenset({TaskStatus.done, TaskStatus.aborted, TaskStatus.failed})
OPEN_STATES = frozenset({TaskStatus.queued, TaskStatus.locked})
ALLOWED = ", ".join(s.value for s in TaskStatus)


class Transition(StrEnum):
    """What a status change is, which decides who may make it."""

    none = "none"  # already in that status
    lock = "lock"  # queued -> locked
    unlock = "unlock"  # locked -> queued
    end = "end"  # queued/locked -> done/aborted/failed
    reopen = "reopen"  # ended -> queued or another end state


def classify(current: TaskStatus, target: TaskStatus) -> Transition | None:
    """The kind of transition from `current` to `target`; None when the table forbids it."""
    if current == target:
        return Transition.none
    if current == TaskStatus.queued and target == TaskStatus.locked:
        return Transition.lock
    if current == TaskStatus.locked and target == TaskStatus.queued:
        return Transition.unlock
    if current in OPEN_STATES and target in END_STATES:
        return Transition.end
    if current in END_STATES and (target in END_STATES or target == TaskStatus.queued):
        return Transition.reopen
    return None


def event_type_for(current: TaskStatus, target: TaskStatus) -> str | None:
    """The event a status change emits (section 4), None for no change."""
    kind = classify(current, target)
    if kind in (None, Transition.none):
        return None
    if kind == Transition.lock:
        return "task.locked"
    if kind == Transition.unlock:
        return "task.unlocked"
    return f"task.status.{target.value}"


def taskgroup_status(statuses: list[str]) -> str:
    """A task group's derived status from its tasks' statuses (section 4)."""
    if any(s == TaskStatus.aborted for s in statuses):
        return TaskStatus.aborted.value
    if any(s == TaskStatus.failed for s in statuses):
        return TaskStatus.failed.value
    if statuses and all(s == TaskStatus.done for s in statuses):
        return TaskStatus.done.value
    return TaskStatus.queued.value
