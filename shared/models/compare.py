"""The options autogenerate compares models and migrations with (alembic env and tests)."""

from __future__ import annotations

from typing import Any

from sqlmodel import SQLModel

# Indexes with an expression (`priority DESC`) that not every dialect can reflect and compare;
# the migration creates them and a test checks that they exist.
EXPRESSION_INDEXES = frozenset({"ix_tasks_status_priority_id"})


# Autogenerate compares index names and columns, not a partial index's `postgresql_where`;
# tests/integration/test_migrations.py checks those predicates (migration 0007).

# Foreign keys that only SQLite's schema has (migration 0006 dropped them elsewhere).
SQLITE_ONLY_FOREIGN_KEYS = frozenset({"fk_tasks_lock_holder_id_users"})


def _include_object(dialect_name: str) -> Any:
    def include(obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any) -> bool:
        if type_ == "index" and name in EXPRESSION_INDEXES:
            return False
        return not (
            dialect_name == "sqlite"
            and type_ == "foreign_key_constraint"
            and reflected
            and name in SQLITE_ONLY_FOREIGN_KEYS
        )

    return include


def autogenerate_options(dialect_name: str) -> dict[str, Any]:
    return {
        "target_metadata": SQLModel.metadata,
        "compare_type": True,
        "render_as_batch": dialect_name == "sqlite",
        "include_object": _include_object(dialect_name),
    }
