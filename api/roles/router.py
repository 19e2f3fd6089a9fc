from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Response

from api.auth.service import Actor
from api.deps import CurrentActor, SessionDep, require
from api.errors import problem_responses
from api.roles import service
from api.roles.schemas import RoleCreate, RoleList, RoleRead, RoleUpdate, UserRoleRead

router = APIRouter(tags=["roles"], responses=problem_responses(401, 403, 404, 409, 413, 422))

ManageRoles = Annotated[Actor, Depends(require("roles_manage"))]


@router.get("/roles", summary="List roles with their permissions")
async def list_roles(session: SessionDep, _: CurrentActor) -> RoleList:
    return RoleList(roles=await service.list_roles(session))


@router.post("/roles", status_code=201, summary="Create a role")
async def create_role(data: RoleCreate, session: SessionDep, _: ManageRoles) -> RoleRead:
    return await service.read_role(session, await service.create(session, data))


@router.get("/roles/{role}", summary="Get a role by id or name")
async def get_role(role: str, session: SessionDep, _: CurrentActor) -> RoleRead:
    return await service.read_role(session, await service.get_role(session, role))


@router.put(
    "/roles/{role}",
    summary="Update a role (partial; permissions, when sent, replace the role's set)",
)
async def update_role(role: str, data: RoleUpdate, session: SessionDep, _: ManageRoles) -> RoleRead:
    found = await service.get_role(session, role)
    await service.update(session, found, data)
    return await service.read_role(session, found)


@router.delete("/roles/{role}", status_code=204, summary="Delete a role (not a built-in one)")
async def delete_role(role: str, session: SessionDep, _: ManageRoles) -> Response:
    await service.delete_role(session, await service.get_role(session, role))
    return Response(status_code=204)


@router.put("/users/{user}/roles/{role}", summary="Give a user a role (idempotent)")
async def add_user_role(user: str, role: str, session: SessionDep, _: ManageRoles) -> UserRoleRead:
    return await service.assign_role(session, user, role, True)


@router.delete("/users/{user}/roles/{role}", summary="Take a role from a user (idempotent)")
async def remove_user_role(
    user: str, role: str, session: SessionDep, _: ManageRoles
) -> UserRoleRead:
    return await service.assign_role(session, user, role, False)
