"""Claim next, the hot path: written for the database it runs on.

PostgreSQL runs the whole claim as one statement (api/tasks/claim_pg.py); SQLite as one
function on the connection's thread (api/tasks/claim_sqlite.py); MariaDB as one prepared
compound statement (api/tasks/claim_mysql.py). Claims that filter by template, group or
tags resolve those references through the ORM and take the generic path
(api/tasks/claim.py), as every claim on MySQL does (no compound statements outside stored
programs there).
"""

from __future__ import annotations

from fastapi import FastAPI, Request

from api.tasks import claim_mysql, claim_pg, claim_sqlite
from api.tasks.schemas import ClaimRequest, TaskRead


def applies(app: FastAPI, data: ClaimRequest) -> bool:
    """No reference to resolve, on a database with a fast path."""
    dialect = app.state.engine.dialect
    return (
        (dialect.name in ("postgresql", "sqlite") or bool(getattr(dialect, "is_mariadb", False)))
        and data.template is None
        and data.group is None
        and not data.tags
    )


async def claim(request: Request, data: ClaimRequest) -> TaskRead | None:
    backend = request.app.state.engine.dialect.name
    if backend == "mysql":
        return await claim_mysql.claim(request, data)
    if backend == "sqlite":
        return await claim_sqlite.claim(request, data)
    return await claim_pg.claim(request, data)
