"""The broker consumer: events from `taskmanager.deliveries` become deliveries, then are sent.

A message is acknowledged only after its deliveries are committed; one that was not (a crash,
a lost channel) comes again, and makes nothing twice (`(event_id, target)` is unique).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from aio_pika.abc import (
    AbstractChannel,
    AbstractIncomingMessage,
    AbstractQueue,
    AbstractRobustConnection,
)
from sqlalchemy.ext.asyncio import AsyncEngine

from shared.delivery.policy import RetryPolicy
from shared.events.topology import declare_delivery_queue
from worker import store
from worker.dispatcher import Dispatcher

log = logging.getLogger("taskmanager.consumer")


class Consumer:
    def __init__(
        self,
        engine: AsyncEngine,
        connection: AbstractRobustConnection,
        dispatcher: Dispatcher,
        policy: RetryPolicy,
        claim_seconds: float,
        prefetch: int = 256,
        batch: int = 100,
    ) -> None:
        self.engine = engine
        self.connection = connection
        self.dispatcher = dispatcher
        self.policy = policy
        self.claim_seconds = claim_seconds
        self.prefetch = prefetch
        self.batch = batch
        self.consumed = 0
        self._messages: asyncio.Queue[AbstractIncomingMessage] = asyncio.Queue()
        self._channel: AbstractChannel | None = None
        self._queue: AbstractQueue | None = None
        self._tag: str | None = None
        self._loop: asyncio.Task[None] | None = None
        self._idle = asyncio.Event()
        self._idle.set()

    async def start(self) -> None:
        self._channel = await self.connection.channel()
        await self._channel.set_qos(prefetch_count=self.prefetch)
        self._queue = await declare_delivery_queue(self._channel)
        self._tag = await self._queue.consume(self._messages.put)
        self._loop = asyncio.create_task(self._batches(), name="consumer")

    async def _batches(self) -> None:
        while True:
            batch = [await self._messages.get()]
            self._idle.clear()
            while len(batch) < self.batch and not self._messages.empty():
                batch.append(self._messages.get_nowait())
            try:
                await self._process(batch)
            except Exception:
                # Never let the loop end: the batch goes back to the queue.
                log.exception("handling %d events failed; requeued", len(batch))
                for message in batch:
                    with contextlib.suppress(Exception):
                        await message.nack(requeue=True)
                await asyncio.sleep(1.0)
            finally:
                if self._messages.empty():
                    self._idle.set()

    async def _process(self, batch: list[AbstractIncomingMessage]) -> None:
        await self.dispatcher.wait_for_room()
        owner = store.new_owner(self.dispatcher.name)
        try:
            async with self.engine.begin() as connection:
                made = await store.create(
                    connection,
                    [message.body.decode(errors="replace") for message in batch],
                    self.dispatcher.webhooks,
                    owner,
                    self.policy,
                    self.claim_seconds,
                )
        except Exception:
            log.exception("making deliveries for %d events failed; requeued", len(batch))
            await asyncio.sleep(1.0)
            for message in batch:
                with contextlib.suppress(Exception):
                    await message.nack(requeue=True)
            return
        self.dispatcher.submit(made)
        for message in batch:
            # A channel lost since delivery: the broker sends the message again, and it
            # makes nothing new.
            with contextlib.suppress(Exception):
                await message.ack()
        self.consumed += len(batch)

    async def stop(self, grace_seconds: float) -> None:
        """Stop receiving, finish the messages already here within the grace period."""
        if self._queue is not None and self._tag is not None:
            with contextlib.suppress(Exception):
                await self._queue.cancel(self._tag)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), grace_seconds)
        if self._loop is not None:
            self._loop.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop
        if self._channel is not None:
            # Messages not acknowledged go back to the queue for the next worker.
            with contextlib.suppress(Exception):
                await self._channel.close()
