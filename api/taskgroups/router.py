from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from api.auth.service import Actor
from api.deps import CurrentActor, SessionDep, SettingsDep, require
from api.errors import problem_responses
from api.refs import uri
from api.taskgroups import service
from api.taskgroups.schemas import (
    TaskGroupBrief,
    TaskGroupCreate,
    TaskGroupList,
    TaskGroupRead,
    TaskGroupUpdate,
)
from api.tasks.read import summaries
from shared.models import TaskGroup

router = APIRouter(
    prefix="/taskgroups",
    tags=["task groups"],
    responses=problem_responses(401, 403, 404, 409, 413, 422),
)

Reader = Annotated[CurrentActor, Depends(require("task_read", "task_read_all", "task_add"))]


async def _read(session: AsyncSession, actor: Actor, taskgroup: TaskGroup) -> TaskGroupRead:
    tasks = await service.tasks_of(session, actor, taskgroup)
    return TaskGroupRead(
        uri=uri("taskgroups", taskgroup.id),
        id=taskgroup.id or 0,
        label=taskgroup.label,
        status=taskgroup.status,
        callback_url=taskgroup.callback_url,
        callback_content=taskgroup.callback_content,
        tasks=await summaries(session, tasks),
    )


@router.get("", summary="List task groups")
async def list_taskgroups(session: SessionDep, actor: Reader) -> TaskGroupList:
    rows = await session.scalars(
        select(TaskGroup).where(*service.visible_filter(actor)).order_by(col(TaskGroup.id))
    )
    return TaskGroupList(
        taskgroups=[
            TaskGroupBrief(
                uri=uri("taskgroups", g.id), id=g.id or 0, label=g.label, status=g.status
            )
            for g in rows
        ]
    )


@router.post(
    "",
    status_code=201,
    summary="Create a task group with its tasks",
    responses=problem_responses(400),
)
async def create_taskgroup(
    data: TaskGroupCreate,
    session: SessionDep,
    settings: SettingsDep,
    actor: Annotated[CurrentActor, Depends(require("task_add"))],
) -> TaskGroupRead:
    return await _read(session, actor, await service.create(session, actor, settings, data))


@router.get("/{taskgroup}", summary="Get a task group by id or label")
async def get_taskgroup(taskgroup: str, session: SessionDep, actor: Reader) -> TaskGroupRead:
    return await _read(session, actor, await service.get_visible(session, actor, taskgroup))


@router.put("/{taskgroup}", summary="Change a task group's label or callback")
async def update_taskgroup(
    taskgroup: str,
    data: TaskGroupUpdate,
    session: SessionDep,
    actor: Annotated[CurrentActor, Depends(require("task_update_all"))],
) -> TaskGroupRead:
    found = await service.get(session, taskgroup)
    await service.update(session, found, data)
    return await _read(session, actor, found)
