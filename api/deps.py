"""Request-scoped dependencies: the session (one commit per request) and the caller."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.security import HTTPBasic, HTTPBasicCredentials, OAuth2PasswordBearer
from sqlalchemy.ext.asyncio import AsyncSession

from api.auth.credential import Credential, presented
from api.auth.service import Actor, CredentialCache, Fetch, authenticate, session_fetch
from api.errors import Forbidden
from shared.settings import Settings


def get_settings_dep(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


SettingsDep = Annotated[Settings, Depends(get_settings_dep)]


@asynccontextmanager
async def unit_of_work(request: Request) -> AsyncIterator[AsyncSession]:
    """One transaction: committed when the block ends, rolled back when it raises."""
    async with request.app.state.sessions() as session:
        try:
            yield session
            await session.commit()
        except BaseException:
            await session.rollback()
            raise


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    """One transaction per request, committed after the handler and before the response.

    `scope="function"` on the dependency below makes FastAPI run the commit before the
    response is sent, so a failed commit reaches the client as an error, never as a 200.
    """
    async with unit_of_work(request) as session:
        yield session


SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]

_basic = HTTPBasic(auto_error=False, description="Username (or email) and password")
_bearer = OAuth2PasswordBearer(
    tokenUrl="api/v1/auth/token",
    auto_error=False,
    description="Log in with username and password to get a bearer token",
)


async def actor_of(request: Request, fetch: Fetch) -> Actor:
    """The caller of `request`, looked up with `fetch` (a session's, or a raw connection's)."""
    state = request.app.state
    cache: CredentialCache = state.credential_cache
    return await authenticate(
        fetch, state.settings, state.secret_key, cache, request.headers.get("authorization")
    )


async def verified_credential(request: Request) -> Credential | None:
    """Full authentication of the caller on a session of the engine (argon2 for a Basic
    password not verified yet, then cached; or the 401 every path gives), then its
    credential as presented. The hot paths call this before they take one of their few
    connections, so that no password check holds one (api/tasks/claim_pg.py)."""
    async with request.app.state.sessions() as session:
        await actor_of(request, session_fetch(session))
    state = request.app.state
    authorization = request.headers.get("authorization")
    return presented(state.settings, state.secret_key, state.credential_cache, authorization)


async def get_actor(
    request: Request,
    session: SessionDep,
    _basic_credentials: Annotated[HTTPBasicCredentials | None, Depends(_basic)],
    _bearer_token: Annotated[str | None, Depends(_bearer)],
) -> Actor:
    return await actor_of(request, session_fetch(session))


CurrentActor = Annotated[Actor, Depends(get_actor)]


def require(*permissions: str) -> Callable[..., Coroutine[Any, Any, Actor]]:
    """A dependency that lets the caller through when it holds any of `permissions`."""

    async def check(actor: CurrentActor) -> Actor:
        if not actor.can(*permissions):
            raise Forbidden(f"Permission required: {' or '.join(permissions)}")
        return actor

    return check
