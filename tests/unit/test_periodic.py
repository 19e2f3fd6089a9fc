"""A periodic job that keeps failing logs its traceback once per outage."""

from __future__ import annotations

import asyncio
import logging

import pytest

from shared.periodic import periodic


async def test_an_outage_logs_one_traceback_then_short_lines(
    caplog: pytest.LogCaptureFixture,
) -> None:
    outcomes = iter([False, False, False, True, False, *[True] * 1000])
    runs = 0
    eighth_run = asyncio.Event()

    async def job() -> None:
        nonlocal runs
        runs += 1
        if runs == 8:
            eighth_run.set()
        if not next(outcomes):
            raise ConnectionRefusedError("database down")

    with caplog.at_level(logging.INFO, logger="taskmanager.periodic"):
        async with periodic("job", 0.001, job):
            await asyncio.wait_for(eighth_run.wait(), 10)
    records = [r for r in caplog.records if r.name == "taskmanager.periodic"]
    with_traceback = [r for r in records if r.exc_info]
    assert len(with_traceback) == 2  # the first outage and the second
    assert [r.levelname for r in records] == [
        "ERROR",
        "WARNING",
        "WARNING",
        "INFO",
        "ERROR",
        "INFO",
    ]
