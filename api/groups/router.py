from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Response

from api.auth.service import Actor
from api.deps import CurrentActor, SessionDep, require
from api.errors import problem_responses
from api.groups import service
from api.groups.schemas import (
    GroupCreate,
    GroupList,
    GroupRead,
    GroupUpdate,
    GroupUsers,
    MembershipRead,
)

router = APIRouter(
    prefix="/groups",
    tags=["groups"],
    responses=problem_responses(401, 403, 404, 409, 413, 422),
)

UpdateGroups = Annotated[Actor, Depends(require("group_update"))]


@router.get("", summary="List groups (without group_read_all: your own)")
async def list_groups(session: SessionDep, actor: CurrentActor) -> GroupList:
    return GroupList(groups=await service.list_uris(session, actor))


@router.post("", status_code=201, summary="Create a group, optionally with its members")
async def create_group(
    data: GroupCreate,
    session: SessionDep,
    _: Annotated[Actor, Depends(require("group_add"))],
) -> GroupRead:
    return await service.read_group(session, await service.create(session, data))


@router.get("/{group}", summary="Get a group by id or groupname")
async def get_group(group: str, session: SessionDep, actor: CurrentActor) -> GroupRead:
    return await service.read_group(session, await service.get_visible_group(session, actor, group))


@router.put("/{group}", summary="Update a group (partial; members, when sent, replace the set)")
async def update_group(
    group: str, data: GroupUpdate, session: SessionDep, actor: UpdateGroups
) -> GroupRead:
    found = await service.get_visible_group(session, actor, group)
    await service.update(session, found, data)
    return await service.read_group(session, found)


@router.delete("/{group}", status_code=204, summary="Delete a group without assigned tasks")
async def delete_group(
    group: str,
    session: SessionDep,
    actor: Annotated[Actor, Depends(require("group_delete"))],
) -> Response:
    await service.delete_group(session, await service.get_visible_group(session, actor, group))
    return Response(status_code=204)


@router.get("/{group}/users", summary="The members of a group")
async def group_users(group: str, session: SessionDep, actor: CurrentActor) -> GroupUsers:
    found = await service.get_visible_group(session, actor, group)
    return GroupUsers(users=await service.member_uris(session, found))


@router.put("/{group}/users/{user}", summary="Add a member (idempotent)")
async def add_member(
    group: str, user: str, session: SessionDep, actor: UpdateGroups
) -> MembershipRead:
    return await service.assign_member(session, actor, group, user, True)


@router.delete("/{group}/users/{user}", summary="Remove a member (idempotent)")
async def remove_member(
    group: str, user: str, session: SessionDep, actor: UpdateGroups
) -> MembershipRead:
    return await service.assign_member(session, actor, group, user, False)
