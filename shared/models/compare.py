"""The options autogenerate compares models and migrations with (alembic env and tests)."""

from __future__ import annotations

from typing import Any

from sqlmodel import SQLModel

# Indexes with an expression (`priority DESC`) that not every dialect can reflect and compare;
# the migration creates them and a test checks that they exist.
EXPRESSION_INDEXES = frozenset({"ix_tasks_status_priority_id"})


def include_object(
    obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any
) -> bool:
    return not (type_ == "index" and name in EXPRESSION_INDEXES)


def autogenerate_options(dialect_name: str) -> dict[str, Any]:
    return {
        "target_metadata": SQLModel.metadata,
        "compare_type": True,
        "render_as_batch": dialect_name == "sqlite",
        "include_object": include_object,
    }
