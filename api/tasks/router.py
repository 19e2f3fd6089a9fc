from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query, Request, Response
from sqlalchemy.ext.asyncio import AsyncSession

from api import lookup
from api.auth.credential import presented
from api.auth.service import Actor, session_fetch
from api.deps import (
    CurrentActor,
    SessionDep,
    SettingsDep,
    actor_of,
    require,
    unit_of_work,
)
from api.errors import Unprocessable, problem_responses
from api.groups.service import get_visible_group
from api.refs import MAX_ID
from api.tasks import bulk, claim, service, status_mysql, status_pg, status_sqlite, transitions
from api.tasks.read import read_lock, read_task, summaries
from api.tasks.schemas import (
    BulkCreate,
    BulkResult,
    ClaimRequest,
    LockRead,
    LockRequest,
    TaskCreate,
    TaskList,
    TaskRead,
    TaskUpdate,
)
from api.tasks.service import TaskFilter

router = APIRouter(tags=["tasks"], responses=problem_responses(401, 403, 404, 409, 413, 422))
# The hot paths (claim, status change) on a router of their own, matched before every other
# route (see api/routes.py).
claim_router = APIRouter(tags=["tasks"], responses=problem_responses(401, 403, 404, 409, 413, 422))

IfMatch = Annotated[
    str | None,
    Header(description="Precondition: the lock_version the caller holds (like lock_version)"),
]


def _if_match(value: str | None, body_value: int | None) -> int | None:
    if body_value is not None:
        return body_value
    if value is None or value.strip() == "*":
        return None
    digits = value.strip().removeprefix("W/").strip('"')
    if not digits.isdigit():
        raise Unprocessable(f"If-Match must carry a lock_version number, got '{value}'")
    return int(digits)


class ListParams:
    def __init__(
        self,
        project: str | None = None,
        template: str | None = Query(None, description="Template id, label or uri"),
        user: str | None = Query(None, description="That user's tasks (task_read_all)"),
        status: str | None = Query(None, description="queued, locked, done, aborted or failed"),
        tag: list[str] = Query(default_factory=list, description="Tag names; all must match"),
        application_name: str | None = None,
        tracking_id: str | None = Query(None, description="The id the generating system gave"),
        scope: str | None = Query(None, description="'all' (task_read_all) or 'mine'"),
        offset: int = Query(0, ge=0, le=MAX_ID),
        limit: int | None = Query(None, ge=1, description="Default and maximum: the max page"),
    ) -> None:
        self.filter = TaskFilter(
            project=project,
            template=template,
            user=user,
            status=status,
            tags=tag,
            application_name=application_name,
            tracking_id=tracking_id,
            scope=scope,
        )
        self.offset = offset
        self.limit = limit


async def _list(
    session: SessionDep, actor: CurrentActor, settings: SettingsDep, params: ListParams
) -> TaskList:
    limit = min(params.limit or settings.max_page, settings.max_page)
    tasks, total = await service.list_tasks(session, actor, params.filter, params.offset, limit)
    return TaskList(
        tasks=await summaries(session, tasks),
        total_tasks=total,
        offset=params.offset,
        limit=limit,
    )


@router.get("/tasks", summary="List the tasks the caller may work on (or all, or a user's)")
async def list_tasks(
    session: SessionDep,
    actor: CurrentActor,
    settings: SettingsDep,
    params: Annotated[ListParams, Depends()],
) -> TaskList:
    return await _list(session, actor, settings, params)


@router.get("/users/{user_ref}/tasks", summary="A user's tasks (direct and via its groups)")
async def list_user_tasks(
    user_ref: str,
    session: SessionDep,
    actor: CurrentActor,
    settings: SettingsDep,
    params: Annotated[ListParams, Depends()],
) -> TaskList:
    params.filter.user = str((await lookup.user(session, user_ref)).id)
    return await _list(session, actor, settings, params)


@router.get("/groups/{group_ref}/tasks", summary="The tasks assigned to a group")
async def list_group_tasks(
    group_ref: str,
    session: SessionDep,
    actor: CurrentActor,
    settings: SettingsDep,
    params: Annotated[ListParams, Depends()],
) -> TaskList:
    found = await get_visible_group(session, actor, group_ref)
    params.filter.group_id = found.id
    if not actor.can("task_read_all"):
        params.filter.user = str(actor.id)
    elif params.filter.scope is None and params.filter.user is None:
        params.filter.scope = "all"
    return await _list(session, actor, settings, params)


@router.post("/tasks", status_code=201, summary="Create a task", responses=problem_responses(400))
async def create_task(
    data: TaskCreate,
    session: SessionDep,
    settings: SettingsDep,
    actor: Annotated[CurrentActor, Depends(require("task_add"))],
) -> TaskRead:
    task = await service.create_task(session, actor, settings, data)
    return await read_task(session, task)


@router.post(
    "/tasks/bulk",
    status_code=201,
    summary="Create up to 10,000 tasks at once (all or nothing); known tracking ids are skipped",
    responses=problem_responses(400),
)
async def bulk_create(
    data: BulkCreate,
    session: SessionDep,
    settings: SettingsDep,
    actor: Annotated[CurrentActor, Depends(require("task_add"))],
) -> BulkResult:
    return await bulk.bulk_create(session, actor, settings, data.tasks)


@claim_router.post(
    "/tasks/claim",
    response_model=TaskRead,
    summary="Atomically take the caller's next task (highest priority, then oldest) and lock it",
    responses={204: {"description": "Nothing left to do"}},
    # The schemes every other operation declares through its dependencies; this hot path
    # reads the Authorization header itself.
    openapi_extra={"security": [{"HTTPBasic": []}, {"OAuth2PasswordBearer": []}]},
)
async def claim_task(request: Request, data: ClaimRequest | None = None) -> TaskRead | Response:
    # A claim without references to resolve never gets here: api/hotpaths.py answers it on
    # the raw connection (api/tasks/claim_raw.py). Not SessionDep/CurrentActor, so that the
    # caller's credential is checked in the same order as there.
    data = data or ClaimRequest()
    async with unit_of_work(request) as session:
        actor = await actor_of(request, session_fetch(session))
        ttl = request.app.state.settings.lock_ttl_seconds
        claimed = await claim.claim(session, actor, data, ttl)
        task = await read_task(session, claimed) if claimed is not None else None
    if task is None:
        return Response(status_code=204)
    return Response(task.model_dump_json(), media_type="application/json")


@router.get("/tasks/{task_id}", summary="Get a task")
async def get_task(task_id: int, session: SessionDep, actor: CurrentActor) -> TaskRead:
    return await read_task(session, await service.get_task(session, actor, task_id))


@dataclass
class StatusChange:
    """What `update_task` works with: a session and the caller."""

    session: AsyncSession
    actor: Actor
    ttl_seconds: int


async def fast_status_change(
    request: Request, task_id: int, if_match: str | None
) -> TaskRead | None:
    state = request.app.state
    backend = state.engine.dialect.name
    if getattr(state.engine.dialect, "is_mariadb", False):
        backend = "mariadb"
    if backend not in ("postgresql", "sqlite", "mariadb") or not 0 < task_id <= MAX_ID:
        return None
    if not request.headers.get("content-type", "").startswith("application/json"):
        return None
    try:
        body = await request.json()
    except ValueError:
        return None
    simple = status_pg.simple_status(body, if_match)
    if simple is None:
        return None
    authorization = request.headers.get("authorization")
    credential = presented(state.settings, state.secret_key, state.credential_cache, authorization)
    if credential is None:
        return None
    if backend == "postgresql":
        return await status_pg.set_status(request, credential, task_id, *simple)
    if backend == "mariadb":
        return await status_mysql.set_status(request, credential, task_id, *simple)
    return await status_sqlite.set_status(request, credential, task_id, *simple)


async def status_change(
    request: Request, task_id: int, if_match: IfMatch = None
) -> AsyncIterator[StatusChange]:
    """The request's session and caller, as SessionDep and CurrentActor give them (a
    dependency, so that a bad credential is refused before the body is read). A status-only
    change on PostgreSQL, MariaDB or SQLite never gets here when `fast_status_change` (run by
    api/hotpaths.py) could make it."""
    async with unit_of_work(request) as session:
        yield StatusChange(
            session=session,
            actor=await actor_of(request, session_fetch(session)),
            ttl_seconds=request.app.state.settings.lock_ttl_seconds,
        )


@claim_router.put(
    "/tasks/{task_id}",
    response_model=TaskRead,
    summary="Change a task (partial); status follows the state machine",
    # The schemes every other operation declares through its dependencies; this hot path
    # reads the Authorization header itself.
    openapi_extra={"security": [{"HTTPBasic": []}, {"OAuth2PasswordBearer": []}]},
)
async def update_task(
    task_id: int,
    data: TaskUpdate,
    change: Annotated[StatusChange, Depends(status_change, scope="function")],
    if_match: IfMatch = None,
) -> TaskRead | Response:
    session, actor = change.session, change.actor
    task = await service.get_task(session, actor, task_id)
    lock_version = _if_match(if_match, data.lock_version)
    transitions.check_precondition(task, lock_version)
    service.check_field_permissions(actor, data)
    status = service.parse_status(data.status) if data.status is not None else None
    await service.update_fields(session, actor, task, data)
    if status is not None:
        await transitions.set_status(
            session, actor, task, status, change.ttl_seconds, lock_version=lock_version
        )
    return await read_task(session, task)


@router.delete("/tasks/{task_id}", status_code=204, summary="Delete a task")
async def delete_task(
    task_id: int,
    session: SessionDep,
    actor: Annotated[CurrentActor, Depends(require("task_delete"))],
) -> Response:
    await service.delete_task(session, actor, await service.get_task(session, actor, task_id))
    return Response(status_code=204)


@router.get("/tasks/{task_id}/lock", summary="Who holds the task's lock")
async def get_lock(task_id: int, session: SessionDep, actor: CurrentActor) -> LockRead:
    return await read_lock(session, await service.get_task(session, actor, task_id))


@router.put("/tasks/{task_id}/lock", summary="Lock the task (or renew the caller's lease)")
async def put_lock(
    task_id: int,
    session: SessionDep,
    actor: CurrentActor,
    settings: SettingsDep,
    data: LockRequest | None = None,
    if_match: IfMatch = None,
) -> LockRead:
    task = await service.get_task(session, actor, task_id)
    data = data or LockRequest()
    target = None
    if data.lock is not None:
        target = (await lookup.user(session, data.lock)).id
    await transitions.lock(
        session,
        actor,
        task,
        settings.lock_ttl_seconds,
        for_user=target,
        lock_version=_if_match(if_match, data.lock_version),
    )
    return await read_lock(session, task)


@router.delete("/tasks/{task_id}/lock", summary="Release the task's lock")
async def delete_lock(
    task_id: int, session: SessionDep, actor: CurrentActor, if_match: IfMatch = None
) -> LockRead:
    task = await service.get_task(session, actor, task_id)
    await transitions.unlock(session, actor, task, lock_version=_if_match(if_match, None))
    return await read_lock(session, task)
