from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Response

from api.deps import CurrentActor, SessionDep, require
from api.errors import Forbidden, problem_responses
from api.templates import service
from api.templates.schemas import TemplateCreate, TemplateList, TemplateRead, TemplateUpdate

router = APIRouter(
    prefix="/task_templates",
    tags=["task templates"],
    responses=problem_responses(401, 403, 404, 409, 413, 422),
)


def _check_readable(actor: CurrentActor) -> None:
    if not actor.can("task_read", "task_read_all", "template_add", "template_update"):
        raise Forbidden("Permission required: task_read")


@router.get("", summary="List task templates")
async def list_templates(session: SessionDep, actor: CurrentActor) -> TemplateList:
    _check_readable(actor)
    return TemplateList(task_templates=await service.list_uris(session))


@router.post("", status_code=201, summary="Create a task template")
async def create_template(
    data: TemplateCreate,
    session: SessionDep,
    _: Annotated[object, Depends(require("template_add"))],
) -> TemplateRead:
    return service.read(await service.create(session, data))


@router.get("/{template}", summary="Get a task template by id or label")
async def get_template(template: str, session: SessionDep, actor: CurrentActor) -> TemplateRead:
    _check_readable(actor)
    return service.read(await service.get(session, template))


@router.put("/{template}", summary="Update a task template")
async def update_template(
    template: str,
    data: TemplateUpdate,
    session: SessionDep,
    _: Annotated[object, Depends(require("template_update"))],
) -> TemplateRead:
    found = await service.get(session, template)
    await service.update(session, found, data)
    return service.read(found)


@router.delete("/{template}", status_code=204, summary="Delete an unused task template")
async def delete_template(
    template: str,
    session: SessionDep,
    _: Annotated[object, Depends(require("template_delete"))],
) -> Response:
    await service.delete(session, await service.get(session, template))
    return Response(status_code=204)
