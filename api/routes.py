"""Every router, in the order their paths must match (`routers`, for create_app)."""

from __future__ import annotations

from fastapi import APIRouter

from api.auth.router import router as auth_router
from api.config_import.router import router as config_import_router
from api.deliveries.router import router as deliveries_router
from api.groups.router import router as groups_router
from api.health.router import router as health_router
from api.roles.router import router as roles_router
from api.tags.router import router as tags_router
from api.taskgroups.router import router as taskgroups_router
from api.tasks.router import claim_router
from api.tasks.router import router as tasks_router
from api.templates.router import router as templates_router
from api.users.router import router as users_router
from api.webhooks.router import router as webhooks_router

api_router = APIRouter()
api_router.include_router(health_router)

v1 = APIRouter(prefix="/api/v1")
v1.include_router(auth_router)
v1.include_router(users_router)
v1.include_router(groups_router)
v1.include_router(roles_router)
v1.include_router(config_import_router)
v1.include_router(templates_router)
v1.include_router(tasks_router)
v1.include_router(taskgroups_router)
v1.include_router(tags_router)
v1.include_router(webhooks_router)
v1.include_router(deliveries_router)

api_router.include_router(v1)

# The claim and the task PUT first and at the top: readers' clients claim and mark tasks done
# in a tight loop, and FastAPI's matching costs time per route tried and per level of
# included routers.
claim = APIRouter(prefix="/api/v1")
claim.include_router(claim_router)
routers = [claim, api_router]
