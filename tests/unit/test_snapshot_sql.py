"""The event snapshot query joins what it reads: no cartesian product for SQLAlchemy to warn of."""

from __future__ import annotations

import warnings

import pytest
from sqlalchemy.dialects import mysql, postgresql, sqlite
from sqlalchemy.engine.interfaces import Dialect
from sqlalchemy.sql.compiler import FROM_LINTING, WARN_LINTING

from shared.taskevents import SNAPSHOT


@pytest.mark.parametrize("dialect", [postgresql.dialect(), mysql.dialect(), sqlite.dialect()])
def test_snapshot_has_no_cartesian_product(dialect: Dialect) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        SNAPSHOT.compile(dialect=dialect, linting=FROM_LINTING | WARN_LINTING)
