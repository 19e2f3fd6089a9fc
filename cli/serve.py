"""The app uvicorn serves, composed with what runs beside it."""

from __future__ import annotations

from fastapi import FastAPI

from api.app import create_app


def app_factory() -> FastAPI:
    return create_app()
