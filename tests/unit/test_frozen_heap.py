"""`serve` takes the objects startup made out of the garbage collector's full collections."""

from __future__ import annotations

import gc
from typing import Any

import pytest
from fastapi import FastAPI

from cli import serve
from cli.serve import frozen_heap


async def test_startup_objects_are_frozen_while_serving() -> None:
    made_at_startup = [[n] for n in range(1000)]  # lists are tracked by the collector
    assert gc.get_freeze_count() == 0
    async with frozen_heap(FastAPI()):
        assert gc.get_freeze_count() > len(made_at_startup)
    assert gc.get_freeze_count() == 0


def test_serve_freezes_after_every_other_service_started(monkeypatch: pytest.MonkeyPatch) -> None:
    """Services start in order: the freeze comes last, so it covers what they made too."""
    calls: list[dict[str, Any]] = []

    def create_app(settings: object, **kwargs: Any) -> FastAPI:
        calls.append(kwargs)
        return FastAPI()

    monkeypatch.setattr(serve, "create_app", create_app)
    monkeypatch.setattr(serve, "get_settings", object)
    serve.app_factory()
    services = calls[0]["services"]
    assert services[-1] is frozen_heap
    assert services.count(frozen_heap) == 1
