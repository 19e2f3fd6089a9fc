"""The outbox relay: publishes committed events to RabbitMQ, in order, in batches.

A row is marked published only after the broker confirmed every message of its batch, in
the transaction that locked the rows: a relay that dies mid-batch leaves them unpublished
for the next one (at least once), and two relays never take the same rows (SKIP LOCKED).
"""

from __future__ import annotations

import asyncio
import logging

import aio_pika
from aio_pika.abc import AbstractExchange, AbstractRobustConnection
from sqlalchemy.ext.asyncio import AsyncEngine

from shared.events.topology import declare_delivery_queue, declare_exchange
from worker import outbox
from worker.wakeup import Wakeup

log = logging.getLogger("taskmanager.relay")


class Relay:
    def __init__(
        self,
        engine: AsyncEngine,
        connection: AbstractRobustConnection,
        wakeup: Wakeup,
        batch: int = 500,
        confirm_timeout: float = 30.0,
    ) -> None:
        self.engine = engine
        self.connection = connection
        self.wakeup = wakeup
        self.batch = batch
        self.confirm_timeout = confirm_timeout
        self.published = 0

    async def run(self) -> None:
        failures = 0
        exchange: AbstractExchange | None = None
        while True:
            try:
                if exchange is None:
                    channel = await self.connection.channel(
                        publisher_confirms=True, on_return_raises=True
                    )
                    # The worker's queue too: events published before any worker started
                    # are kept for it.
                    await declare_delivery_queue(channel)
                    exchange = await declare_exchange(channel)
                count = await self.publish_batch(exchange)
                failures = 0
                if count < self.batch:
                    await self.wakeup.wait()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                failures += 1
                delay = min(10.0, 0.2 * 2**failures)
                log.warning("publishing events failed (%s); retrying in %.1f s", exc, delay)
                await asyncio.sleep(delay)

    async def publish_batch(self, exchange: AbstractExchange) -> int:
        async with self.engine.begin() as connection:
            rows = await outbox.take(connection, self.batch)
            if not rows:
                return 0
            await asyncio.wait_for(
                asyncio.gather(
                    *(
                        exchange.publish(
                            aio_pika.Message(
                                row.payload.encode(),
                                message_id=row.event_id,
                                type=row.type,
                                content_type="application/json",
                                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                            ),
                            routing_key=row.type,
                        )
                        for row in rows
                    )
                ),
                self.confirm_timeout,
            )
            await outbox.mark_published(connection, [row.id for row in rows])
        self.published += len(rows)
        return len(rows)
