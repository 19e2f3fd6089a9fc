"""The broker consumer: events from `taskmanager.deliveries` become deliveries, then are sent.

Messages are taken in batches (one transaction makes the deliveries of a whole batch) and
acknowledged only after that transaction committed, with one `ack(multiple=True)` per batch;
one that was not (a crash, a lost channel) comes again, and makes nothing twice
(`(event_id, target)` is unique).
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
        gather_seconds: float = 0.03,
    ) -> None:
        self.engine = engine
        self.connection = connection
        self.dispatcher = dispatcher
        self.policy = policy
        self.claim_seconds = claim_seconds
        self.prefetch = prefetch
        self.batch = batch
        # The events of one relay batch arrive one message at a time: a moment's wait
        # turns them into one transaction instead of several.
        self.gather_seconds = gather_seconds
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
            if self._messages.qsize() < self.batch - 1 and self.gather_seconds > 0:
                await asyncio.sleep(self.gather_seconds)
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
        await acknowledge(batch)
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


async def acknowledge(batch: list[AbstractIncomingMessage]) -> None:
    """Acknowledge the batch: one `ack(multiple=True)` on its last message per channel.

    That acknowledges every message the channel delivered up to that one. The batches are
    taken in the order the channel delivered them and handled one after the other, so each
    earlier message was acknowledged or rejected already, and the later ones (delivery tags
    above) are not touched. After a reconnection a batch may hold messages of the lost
    channel too: acknowledging them fails, the broker sends them again, and they make
    nothing new.
    """
    last: dict[int, AbstractIncomingMessage] = {}
    for message in batch:
        try:
            channel = message.channel
        except Exception:
            continue  # its channel is closed: it cannot be acknowledged, and comes again
        last[id(channel)] = message
    for message in last.values():
        with contextlib.suppress(Exception):
            await message.ack(multiple=True)
