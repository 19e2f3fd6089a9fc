from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Response
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from api.auth.service import Actor
from api.deps import CurrentActor, SessionDep, SettingsDep, require
from api.errors import problem_responses
from api.refs import uri
from api.tags import service
from api.tags.schemas import TagCreate, TagList, TagRead, TagTasks, TagUpdate
from api.tasks.read import summaries
from api.tasks.schemas import TagRef
from api.tasks.service import TaskFilter, list_tasks
from shared.models import Tag, Task
from shared.settings import Settings

router = APIRouter(
    prefix="/tags", tags=["tags"], responses=problem_responses(401, 403, 404, 409, 413, 422)
)


async def _tasks_of(
    session: AsyncSession, actor: Actor, settings: Settings, tag: Tag
) -> list[Task]:
    scope = "all" if actor.can("task_read_all") else None
    tasks, _ = await list_tasks(
        session, actor, TaskFilter(tags=[tag.name], scope=scope), 0, settings.max_page
    )
    return tasks


@router.get("", summary="List tags")
async def list_tags(session: SessionDep, _: CurrentActor) -> TagList:
    tags = await session.scalars(select(Tag).order_by(col(Tag.id)))
    return TagList(tags=[TagRef(uri=uri("tags", t.id), name=t.name) for t in tags])


@router.post("", status_code=201, summary="Create a tag")
async def create_tag(
    data: TagCreate,
    session: SessionDep,
    _: Annotated[object, Depends(require("tag_add"))],
) -> TagRead:
    tag = await service.create(session, data.name)
    return TagRead(uri=uri("tags", tag.id), id=tag.id or 0, name=tag.name, tasks=[])


@router.get("/{tag}", summary="Get a tag and the tasks (visible to the caller) carrying it")
async def get_tag(
    tag: str, session: SessionDep, actor: CurrentActor, settings: SettingsDep
) -> TagRead:
    found = await service.get(session, tag)
    tasks = await _tasks_of(session, actor, settings, found)
    return TagRead(
        uri=uri("tags", found.id),
        id=found.id or 0,
        name=found.name,
        tasks=[uri("tasks", t.id) for t in tasks],
    )


@router.put("/{tag}", summary="Rename a tag")
async def rename_tag(
    tag: str,
    data: TagUpdate,
    session: SessionDep,
    settings: SettingsDep,
    actor: Annotated[CurrentActor, Depends(require("tag_update"))],
) -> TagRead:
    found = await service.get(session, tag)
    await service.rename(session, found, data.name)
    tasks = await _tasks_of(session, actor, settings, found)
    return TagRead(
        uri=uri("tags", found.id),
        id=found.id or 0,
        name=found.name,
        tasks=[uri("tasks", t.id) for t in tasks],
    )


@router.delete("/{tag}", status_code=204, summary="Delete a tag (removes it from its tasks)")
async def delete_tag(
    tag: str,
    session: SessionDep,
    _: Annotated[object, Depends(require("tag_delete"))],
) -> Response:
    await session.delete(await service.get(session, tag))
    await session.flush()
    return Response(status_code=204)


@router.get("/{tag}/tasks", summary="The tasks (visible to the caller) carrying a tag")
async def tag_tasks(
    tag: str, session: SessionDep, actor: CurrentActor, settings: SettingsDep
) -> TagTasks:
    found = await service.get(session, tag)
    return TagTasks(
        tasks=await summaries(session, await _tasks_of(session, actor, settings, found))
    )
