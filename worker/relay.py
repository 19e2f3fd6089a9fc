"""The outbox relay: publishes committed events to RabbitMQ, in order, in batches.

A row is marked published only after the broker confirmed every message of its batch, in
the transaction that locked the rows: a relay that dies mid-batch leaves them unpublished
for the next one (at least once), and two relays never take the same rows (SKIP LOCKED).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

import aio_pika
import aiormq
from aio_pika.abc import AbstractChannel, AbstractExchange, AbstractRobustConnection
from aiormq.abc import ChannelFrame
from pamqp.body import ContentBody
from pamqp.header import ContentHeader
from sqlalchemy.ext.asyncio import AsyncEngine

from shared.events.topology import declare_delivery_queue, declare_exchange
from worker import outbox
from worker.outbox import OutboxRow
from worker.wakeup import Wakeup

log = logging.getLogger("taskmanager.relay")

PERSISTENT = int(aio_pika.DeliveryMode.PERSISTENT)


async def publish_confirmed(
    channel: aiormq.Channel, exchange: str, rows: Sequence[OutboxRow], confirm_seconds: float
) -> None:
    """Publish the rows as persistent, mandatory messages and wait until the broker confirmed
    every one; a nack, a returned (unroutable) message or a closed channel raises.

    The publishes of the batch go to the socket as one write, each registered with aiormq's
    channel for its confirmation as its own `basic_publish` registers it (delivery tag,
    message id for a return). Published one `basic_publish` at a time, each message costs a
    task, a lock and a socket write of its own: most of the relay's CPU, and of the
    broker's, went to those writes.
    """
    if not rows:
        return
    if not (channel.publisher_confirms and channel.on_return_raises):
        # Without both, an unroutable message would count as confirmed.
        raise ValueError("the channel needs publisher confirms and on_return_raises")
    confirmations: list[asyncio.Future[Any]] = []
    tags: dict[str, int] = {}
    async with channel.lock:
        first = channel.delivery_tag
        frames: list[Any] = []
        try:
            for row in rows:
                body = row.payload.encode()
                channel.delivery_tag += 1
                confirmation = channel.create_future()
                channel.confirmations[channel.delivery_tag] = confirmation
                channel.message_id_delivery_tag[row.event_id] = channel.delivery_tag
                tags[row.event_id] = channel.delivery_tag
                confirmations.append(confirmation)
                frames.append(
                    aiormq.spec.Basic.Publish(
                        exchange=exchange, routing_key=row.type, mandatory=True
                    )
                )
                frames.append(
                    ContentHeader(
                        properties=aiormq.spec.Basic.Properties(
                            content_type="application/json",
                            delivery_mode=PERSISTENT,
                            message_id=row.event_id,
                            message_type=row.type,
                        ),
                        body_size=len(body),
                    )
                )
                # frame_max 0 is "no limit": the body goes in one frame, as aiormq sends it.
                size = channel.max_content_size if channel.max_content_size > 0 else len(body)
                frames += [ContentBody(body[at : at + size]) for at in range(0, len(body), size)]
            await channel.write_queue.put(
                ChannelFrame.marshall(channel_number=channel.number, frames=frames)
            )
        except BaseException:
            # Nothing reached the writer: the delivery tags are given back, as
            # aiormq's own publish does when it fails before sending.
            channel.delivery_tag = first
            for event_id, tag in tags.items():
                channel.confirmations.pop(tag, None)
                if channel.message_id_delivery_tag.get(event_id) == tag:
                    del channel.message_id_delivery_tag[event_id]
            for confirmation in confirmations:
                confirmation.cancel()
            raise
    try:
        await asyncio.wait_for(asyncio.gather(*confirmations), confirm_seconds)
    finally:
        for confirmation in confirmations:
            confirmation.cancel()  # a no-op on those settled
        for event_id, tag in tags.items():
            if channel.message_id_delivery_tag.get(event_id) == tag:
                del channel.message_id_delivery_tag[event_id]


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
            except (Exception, asyncio.CancelledError) as exc:
                if isinstance(exc, asyncio.CancelledError):
                    task = asyncio.current_task()
                    if task is None or task.cancelling():
                        raise
                    # Not this task's cancellation: a confirmation the connection rejected
                    # with CancelledError as it closed. The batch stays unpublished.
                failures += 1
                delay = min(10.0, 0.2 * 2**failures)
                log.warning("publishing events failed (%r); retrying in %.1f s", exc, delay)
                await asyncio.sleep(delay)

    async def publish_batch(self, channel: AbstractChannel, exchange: AbstractExchange) -> int:
        async with self.engine.begin() as connection:
            rows = await outbox.take(connection, self.batch)
            if not rows:
                return 0
            underlay = await channel.get_underlay_channel()
            assert isinstance(underlay, aiormq.Channel)
            await publish_confirmed(underlay, exchange.name, rows, self.confirm_timeout)
            await outbox.mark_published(connection, [row.id for row in rows])
        self.published += len(rows)
        return len(rows)
