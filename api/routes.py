"""Every /api/v1 router, in the order their paths must match."""

from __future__ import annotations

from fastapi import APIRouter

from api.auth.router import router as auth_router
from api.health.router import router as health_router
from api.templates.router import router as templates_router

api_router = APIRouter()
api_router.include_router(health_router)

v1 = APIRouter(prefix="/api/v1")
v1.include_router(auth_router)
v1.include_router(templates_router)

api_router.include_router(v1)
