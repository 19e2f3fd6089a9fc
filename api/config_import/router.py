from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from api.auth.service import Actor
from api.config_import import service
from api.config_import.schemas import ConfigImport, ImportReport
from api.deps import CurrentActor, SessionDep
from api.errors import Forbidden, problem_responses

router = APIRouter(
    prefix="/service/config",
    tags=["service"],
    responses=problem_responses(401, 403, 404, 409, 413, 422),
)

ADMIN_PERMISSIONS = ("roles_manage", "user_add", "group_add")


async def require_admin(actor: CurrentActor) -> Actor:
    missing = [p for p in ADMIN_PERMISSIONS if not actor.can(p)]
    if missing:
        raise Forbidden(f"Permission required: {' and '.join(missing)}")
    return actor


Admin = Annotated[Actor, Depends(require_admin)]

DESCRIPTION = (
    "`config_definition` is a configuration file in the 6.x format (YAML or JSON) with the "
    "sections `roles`, `users` (with `roles` and `assignment_weight`), `groups` (with "
    "`members`) and `tags`. `templates` are file paths for the command line and are "
    "reported as skipped. All or nothing: on any error nothing is changed."
)


@router.post(
    "/import-config",
    summary="Import a configuration; what exists is skipped",
    description=DESCRIPTION,
)
async def import_config(data: ConfigImport, session: SessionDep, _: Admin) -> ImportReport:
    config = service.parse_config(data.config_definition)
    return await service.apply_config(session, config, overwrite=False)


@router.put(
    "/import-config",
    summary="Import a configuration; what exists is overwritten",
    description=DESCRIPTION,
)
async def import_config_overwrite(
    data: ConfigImport, session: SessionDep, _: Admin
) -> ImportReport:
    config = service.parse_config(data.config_definition)
    return await service.apply_config(session, config, overwrite=True)
