from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.security import OAuth2PasswordRequestForm

from api.auth.schemas import RefreshRequest, TokenRead
from api.auth.service import Principal, check_password, issue_token, user_from_token
from api.deps import CurrentActor, SessionDep, SettingsDep
from api.errors import NotFound, Unauthorized, problem_responses
from api.users.read import read_user
from api.users.schemas import UserRead
from shared.models import User

router = APIRouter(tags=["auth"], responses=problem_responses(401, 413, 422))


def _tokens(request: Request, user: Principal) -> TokenRead:
    settings = request.app.state.settings
    secret = request.app.state.secret_key
    access, lifetime = issue_token(settings, secret, user, "access")
    refresh, _ = issue_token(settings, secret, user, "refresh")
    return TokenRead(access_token=access, expires_in=lifetime, refresh_token=refresh)


@router.post("/auth/token", summary="Log in (OAuth2 password form) and get a bearer token")
async def token(
    request: Request,
    session: SessionDep,
    form: Annotated[OAuth2PasswordRequestForm, Depends()],
) -> TokenRead:
    user = await check_password(
        session, request.app.state.credential_cache, form.username, form.password
    )
    if user is None:
        raise Unauthorized("Invalid username or password")
    return _tokens(request, user)


@router.post("/auth/refresh", summary="Trade a refresh token for new tokens")
async def refresh(
    request: Request, data: RefreshRequest, session: SessionDep, settings: SettingsDep
) -> TokenRead:
    user = await user_from_token(
        session, settings, request.app.state.secret_key, data.refresh_token, "refresh"
    )
    return _tokens(request, user)


@router.get("/users/me", summary="The authenticated user", responses=problem_responses(404))
async def me(session: SessionDep, actor: CurrentActor) -> UserRead:
    user = await session.get(User, actor.id)
    if user is None:  # deleted between authentication and here
        raise NotFound("User not found")
    return await read_user(session, user)
