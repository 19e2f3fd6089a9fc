"""The outbox relay: publishes committed events to RabbitMQ, in order, in batches.

A row is marked published only after the broker confirmed every message of its batch, in
the transaction that locked the rows: a relay that dies mid-batch leaves them unpublished
for the next one (at least once), and two relays never take the same rows (SKIP LOCKED).
"""

from __future__ import annotations

import asyncio
import logging

import aio_pika
import aiormq
from aio_pika.abc import AbstractChannel, AbstractExchange, AbstractRobustConnection
from sqlalchemy.ext.asyncio import AsyncEngine

from shared.events.topology import declare_delivery_queue, declare_exchange
from worker import outbox
from worker.wakeup import Wakeup

log = logging.getLogger("taskmanager.relay")

PERSISTENT = int(aio_pika.DeliveryMode.PERSISTENT)


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
        channel: AbstractChannel | None = None
        while True:
            try:
                if exchange is None or channel is None:
                    channel = await self.connection.channel(
                        publisher_confirms=True, on_return_raises=True
                    )
                    # The worker's queue too: events published before any worker started
                    # are kept for it.
                    await declare_delivery_queue(channel)
                    exchange = await declare_exchange(channel)
                count = await self.publish_batch(channel, exchange)
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

    async def publish_batch(self, channel: AbstractChannel, exchange: AbstractExchange) -> int:
        async with self.engine.begin() as connection:
            rows = await outbox.take(connection, self.batch)
            if not rows:
                return 0
            # aiormq's channel under aio-pika's, without waiting for each frame to be
            # written before the next is queued (aio-pika's publish does): the batch leaves
            # at once and the broker confirms it as a whole. A nack or a returned
            # (unroutable) message raises, as with aio-pika's publish, and the batch stays
            # unpublished.
            underlay = await channel.get_underlay_channel()
            assert isinstance(underlay, aiormq.Channel)  # its publish takes `wait`
            await asyncio.wait_for(
                asyncio.gather(
                    *(
                        underlay.basic_publish(
                            row.payload.encode(),
                            exchange=exchange.name,
                            routing_key=row.type,
                            properties=aiormq.spec.Basic.Properties(
                                content_type="application/json",
                                delivery_mode=PERSISTENT,
                                message_id=row.event_id,
                                message_type=row.type,
                            ),
                            mandatory=True,
                            wait=False,
                        )
                        for row in rows
                    )
                ),
                self.confirm_timeout,
            )
            await outbox.mark_published(connection, [row.id for row in rows])
        self.published += len(rows)
        return len(rows)
