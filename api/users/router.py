from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from api.auth.service import Actor
from api.deps import CurrentActor, SessionDep, require
from api.errors import Forbidden, problem_responses
from api.users import service
from api.users.read import read_user
from api.users.schemas import UserCreate, UserGroups, UserList, UserRead, UserUpdate
from shared.permissions import READER_ROLE

router = APIRouter(
    prefix="/users",
    tags=["users"],
    responses=problem_responses(401, 403, 404, 409, 413, 422),
)


@router.get("", summary="List users (without user_read_all: only yourself)")
async def list_users(session: SessionDep, actor: CurrentActor) -> UserList:
    return UserList(users=await service.list_uris(session, actor))


@router.post("", status_code=201, summary="Create a user")
async def create_user(
    data: UserCreate,
    session: SessionDep,
    actor: Annotated[Actor, Depends(require("user_add"))],
) -> UserRead:
    if set(data.roles) - {READER_ROLE} and not actor.can("roles_manage"):
        raise Forbidden("Giving a new user roles other than 'user' needs roles_manage")
    return await read_user(session, await service.create(session, data))


@router.get("/{user}", summary="Get a user by id or username")
async def get_user(user: str, session: SessionDep, actor: CurrentActor) -> UserRead:
    return await read_user(session, await service.get_visible_user(session, actor, user))


@router.put(
    "/{user}",
    summary="Update a user (partial)",
    description="You may change your own name, email and password. Other users, `username` "
    "and `active` need user_update_all; `assignment_weight` needs "
    "user_update_assignment_weight. A new password or a deactivation ends the user's tokens.",
)
async def update_user(
    user: str, data: UserUpdate, session: SessionDep, actor: CurrentActor
) -> UserRead:
    found = await service.get_visible_user(session, actor, user)
    await service.update(session, actor, found, data)
    return await read_user(session, found)


@router.delete("/{user}", summary="Deactivate a user (users are never removed)")
async def delete_user(
    user: str,
    session: SessionDep,
    actor: Annotated[Actor, Depends(require("user_delete"))],
) -> UserRead:
    found = await service.get_visible_user(session, actor, user)
    await service.deactivate(session, found)
    return await read_user(session, found)


@router.get("/{user}/groups", summary="The groups a user is a member of")
async def user_groups(user: str, session: SessionDep, actor: CurrentActor) -> UserGroups:
    found = await service.get_visible_user(session, actor, user)
    return UserGroups(groups=await service.group_uris(session, found))
