"""Delivery fixtures: a RabbitMQ vhost per session, a local receiver, a running worker."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import aio_pika
import pytest
from fastapi import FastAPI

from shared.events.topology import declare_delivery_queue
from tests.broker import create_vhost, delete_vhost
from tests.receiver import Receiver, serve_receiver
from worker.service import Worker

FAST_RETRIES = {
    "delivery_retry_base_seconds": 0.05,
    "delivery_poll_seconds": 0.1,
    "relay_poll_seconds": 0.05,
    "delivery_claim_seconds": 5.0,
    "shutdown_grace_seconds": 5.0,
}


@pytest.fixture(scope="session")
def amqp_url() -> Iterator[str]:
    name, url = create_vhost()
    yield url
    delete_vhost(name)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    async with serve_receiver() as running:
        yield running


async def purge_delivery_queue(url: str) -> None:
    connection = await aio_pika.connect(url)
    async with connection:
        channel = await connection.channel()
        queue = await declare_delivery_queue(channel)
        await queue.purge()


def worker_for(app: FastAPI, mode: str, amqp_url: str | None = None) -> Worker:
    """A worker with RabbitMQ (`mode` "broker"), or the embedded in-process delivery."""
    settings = app.state.settings
    if mode == "broker":
        assert amqp_url is not None
        return Worker(
            settings.model_copy(update={**FAST_RETRIES, "amqp_url": amqp_url}), sweep=False
        )
    return Worker(
        settings.model_copy(update={**FAST_RETRIES, "amqp_url": None}),
        engine=app.state.engine,
        broker=False,
        sweep=False,
    )


@pytest.fixture(params=["broker", "embedded"])
async def delivering(request: pytest.FixtureRequest, clean_app: FastAPI) -> AsyncIterator[Worker]:
    """The worker with RabbitMQ, or the embedded in-process delivery `serve` runs."""
    url = None
    if request.param == "broker":
        url = request.getfixturevalue("amqp_url")
        await purge_delivery_queue(url)
    worker = worker_for(clean_app, request.param, url)
    await worker.start()
    yield worker
    await asyncio.wait_for(worker.stop(), 30)
