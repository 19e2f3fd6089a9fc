"""The application factory."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

from fastapi import FastAPI

from api.auth.service import CredentialCache
from api.docs import install_docs
from api.errors import PROBLEM_JSON, Problem, install_error_handlers
from api.hotpaths import HotPathMiddleware
from api.middleware import BodyLimitMiddleware, OutboxWakeMiddleware, RootPathMiddleware
from api.routes import routers
from api.tasks import claim_mysql, claim_pg
from shared import __version__, security
from shared.bootstrap import bootstrap
from shared.db import create_engine, session_factory
from shared.events.notify import OutboxNotifier
from shared.settings import Settings, get_settings

log = logging.getLogger("taskmanager.api")

DESCRIPTION = """
Hands out human reading tasks to users and groups, leases them while someone works on them,
tracks them to done, and calls back the systems that asked for them.

Authenticate with **HTTP Basic** (username or email and password) or a **bearer token**
from `POST /api/v1/auth/token`: the *Authorize* button takes either.
"""


def create_app(
    settings: Settings | None = None,
    *,
    run_bootstrap: bool = True,
    services: list[Callable[[FastAPI], Any]] | None = None,
) -> FastAPI:
    settings = settings or get_settings()
    security.configure(settings)
    if settings.security_password_salt:
        log.info("SECURITY_PASSWORD_SALT is ignored: argon2 salts every password hash itself")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = create_engine(settings.async_database_url)
        app.state.engine = engine
        app.state.sessions = session_factory(engine)
        app.state.secret_key = settings.resolved_secret_key()
        app.state.credential_cache = CredentialCache(app.state.secret_key)
        app.state.outbox_notifier = OutboxNotifier(settings.async_database_url)
        try:
            if run_bootstrap:
                await bootstrap(app.state.sessions, settings)
            async with AsyncExitStack() as stack:
                for service in services or []:
                    await stack.enter_async_context(service(app))
                yield
        finally:
            await app.state.outbox_notifier.close()
            await claim_pg.close(app)
            await claim_mysql.close(app)
            await engine.dispose()

    app = FastAPI(
        title=settings.instance_name,
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        swagger_ui_oauth2_redirect_url=None,
    )
    app.state.settings = settings
    install_error_handlers(app)
    app.add_middleware(HotPathMiddleware)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.add_middleware(OutboxWakeMiddleware)
    app.add_middleware(RootPathMiddleware, prefix=settings.api_prefix)
    install_docs(app)
    for router in routers:
        app.include_router(router)

    original_openapi = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = original_openapi()
        schemas = schema.setdefault("components", {}).setdefault("schemas", {})
        schemas["Problem"] = Problem.model_json_schema()
        problem = {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}}
        for path in schema.get("paths", {}).values():
            for operation in path.values():
                responses = operation.get("responses", {})
                if "requestBody" in operation:
                    # A body that is not UTF-8 or not parseable at all.
                    responses.setdefault("400", {"description": "Bad Request", "content": problem})
                # FastAPI documents its own 422 shape; ours is problem details.
                response = responses.get("422")
                if response is not None:
                    response["content"] = problem
        for name in ("HTTPValidationError", "ValidationError"):
            schemas.pop(name, None)
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app
