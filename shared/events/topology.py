"""The broker topology, declared in one place for the relay and the worker."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from aio_pika.abc import AbstractChannel, AbstractExchange, AbstractQueue

EXCHANGE = "taskmanager.events"
# The worker's queue: every event, turned into callbacks and webhook deliveries.
DELIVERY_QUEUE = "taskmanager.deliveries"

EVENT_TYPES = (
    "task.created",
    "task.updated",
    "task.locked",
    "task.unlocked",
    "task.lock_expired",
    "task.status.done",
    "task.status.aborted",
    "task.status.failed",
    "task.status.queued",
    "task.deleted",
    "taskgroup.done",
    "taskgroup.aborted",
)


async def declare_exchange(channel: AbstractChannel) -> AbstractExchange:
    from aio_pika import ExchangeType

    return await channel.declare_exchange(EXCHANGE, ExchangeType.TOPIC, durable=True)


async def declare_delivery_queue(channel: AbstractChannel) -> AbstractQueue:
    exchange = await declare_exchange(channel)
    queue = await channel.declare_queue(
        DELIVERY_QUEUE, durable=True, arguments={"x-queue-type": "quorum"}
    )
    await queue.bind(exchange, routing_key="#")
    return queue
