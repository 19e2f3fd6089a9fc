"""Delivery without a broker (the embedded mode): outbox rows become deliveries directly.

The rows are turned into deliveries and marked published in one transaction, then sent by
the same dispatcher, with the same retry policy, as the broker's consumer uses.
"""

from __future__ import annotations

import asyncio
import logging

from sqlalchemy.ext.asyncio import AsyncEngine

from shared.delivery.policy import RetryPolicy
from worker import outbox, store
from worker.dispatcher import Dispatcher
from worker.wakeup import Wakeup

log = logging.getLogger("taskmanager.relay")


class InProcessRelay:
    def __init__(
        self,
        engine: AsyncEngine,
        dispatcher: Dispatcher,
        policy: RetryPolicy,
        wakeup: Wakeup,
        claim_seconds: float,
        batch: int = 200,
    ) -> None:
        self.engine = engine
        self.dispatcher = dispatcher
        self.policy = policy
        self.wakeup = wakeup
        self.claim_seconds = claim_seconds
        self.batch = batch

    async def run(self) -> None:
        while True:
            try:
                count = await self.relay_batch()
                if count < self.batch:
                    await self.wakeup.wait()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("turning events into deliveries failed; retrying")
                await asyncio.sleep(1.0)

    async def relay_batch(self) -> int:
        await self.dispatcher.wait_for_room()
        owner = store.new_owner(self.dispatcher.name)
        async with self.engine.begin() as connection:
            rows = await outbox.take(connection, self.batch)
            if not rows:
                return 0
            made = await store.create(
                connection,
                [row.payload for row in rows],
                self.dispatcher.webhooks,
                owner,
                self.policy,
                self.claim_seconds,
            )
            await outbox.mark_published(connection, [row.id for row in rows])
        self.dispatcher.submit(made)
        return len(rows)
