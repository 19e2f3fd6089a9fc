"""The worker: outbox relay, consumer, dispatcher and lease sweeper, started and stopped as one.

With a broker (`TASKMAN_AMQP_URL`) events go outbox -> RabbitMQ -> consumer -> deliveries;
without one, outbox -> deliveries in-process (the embedded mode `serve` also runs). Every
part is safe in several replicas at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
from datetime import timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from shared.db import create_engine, session_factory
from shared.delivery.policy import RetryPolicy
from shared.delivery.sender import Credentials, Sender
from shared.models import utcnow
from shared.settings import Settings
from shared.taskevents import sweep_expired_leases
from worker import outbox, store
from worker.consumer import Consumer
from worker.dispatcher import Dispatcher, options_from
from worker.inprocess import InProcessRelay
from worker.relay import Relay
from worker.wakeup import Wakeup

log = logging.getLogger("taskmanager.worker")


class Worker:
    def __init__(
        self,
        settings: Settings,
        *,
        engine: AsyncEngine | None = None,
        broker: bool | None = None,
        sweep: bool = True,
    ) -> None:
        self.settings = settings
        self.broker = bool(settings.amqp_url) if broker is None else broker
        self.sweep = sweep
        self._own_engine = engine is None
        self.engine = engine or create_engine(settings.async_database_url)
        self.name = f"{socket.gethostname()}:{os.getpid()}"
        self.policy = RetryPolicy(base_seconds=settings.delivery_retry_base_seconds)
        self.sender = Sender(
            Credentials(settings.callback_netrc),
            timeout=settings.delivery_timeout_seconds,
            connections=settings.delivery_concurrency,
        )
        self.dispatcher = Dispatcher(
            self.engine,
            self.sender,
            self.policy,
            store.Webhooks(),
            self.name,
            options_from(settings),
        )
        self.wakeup = Wakeup(settings.async_database_url, settings.relay_poll_seconds)
        self.connection: Any = None
        self.consumer: Consumer | None = None
        self._tasks: list[asyncio.Task[None]] = []
        # Set when a part that should run forever ended with an error.
        self.failed = asyncio.Event()
        self._dispatching: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._dispatching = asyncio.create_task(self.dispatcher.run(), name="dispatcher")
        if self.broker:
            self.connection = await _connect(str(self.settings.amqp_url))
            relay = Relay(self.engine, self.connection, self.wakeup)
            self._tasks.append(asyncio.create_task(relay.run(), name="relay"))
            self.consumer = Consumer(
                self.engine,
                self.connection,
                self.dispatcher,
                self.policy,
                self.settings.delivery_claim_seconds,
                prefetch=self.settings.worker_prefetch,
            )
            await self.consumer.start()
        else:
            inprocess = InProcessRelay(
                self.engine,
                self.dispatcher,
                self.policy,
                self.wakeup,
                self.settings.delivery_claim_seconds,
            )
            self._tasks.append(asyncio.create_task(inprocess.run(), name="inprocess-relay"))
        if self.sweep:
            self._tasks.append(asyncio.create_task(self._sweep(), name="lease-sweeper"))
        self._tasks.append(asyncio.create_task(self._purge(), name="purge"))
        for task in [*self._tasks, self._dispatching]:
            self._watch(task)
        log.info(
            "delivering events %s", "through RabbitMQ" if self.broker else "in-process (no broker)"
        )

    def _watch(self, task: asyncio.Task[None]) -> None:
        def ended(done: asyncio.Task[None]) -> None:
            if not done.cancelled() and done.exception() is not None:
                log.error("%s failed", done.get_name(), exc_info=done.exception())
                self.failed.set()

        task.add_done_callback(ended)

    async def _sweep(self) -> None:
        sessions = session_factory(self.engine)
        while True:
            try:
                if await sweep_expired_leases(sessions):
                    self.wakeup.wake()
            except Exception:
                log.exception("lease sweep failed")
            await asyncio.sleep(self.settings.sweep_interval_seconds)

    async def _purge(self) -> None:
        """Every 10 minutes: published outbox rows and delivered deliveries past retention."""
        purges = (
            (
                "published outbox rows",
                outbox.purge_published,
                timedelta(hours=self.settings.outbox_retention_hours),
            ),
            (
                "delivered deliveries",
                store.purge_delivered,
                timedelta(days=self.settings.delivery_retention_days),
            ),
        )
        while True:
            for what, purge, keep in purges:
                try:
                    async with self.engine.begin() as connection:
                        purged = await purge(connection, utcnow() - keep)
                    if purged:
                        log.info("deleted %d %s older than %s", purged, what, keep)
                except Exception:
                    log.exception("purging %s failed", what)
            await asyncio.sleep(600)

    async def stop(self) -> None:
        """Stop taking work; finish what is in flight within the grace period; close."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.shutdown_grace_seconds
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.consumer is not None:
            # The batch being written may finish; messages not acknowledged come again.
            await self.consumer.stop(min(2.0, self.settings.shutdown_grace_seconds))
        await self.dispatcher.drain(max(0.0, deadline - loop.time()))
        if self._dispatching is not None:
            self._dispatching.cancel()
            await asyncio.gather(self._dispatching, return_exceptions=True)
        if self.connection is not None:
            with contextlib.suppress(Exception):
                await self.connection.close()
        await self.wakeup.close()
        await self.sender.aclose()
        if self._own_engine:
            await self.engine.dispose()


async def _connect(url: str) -> Any:
    import aio_pika

    delay = 0.5
    while True:
        try:
            return await aio_pika.connect_robust(url)
        except (OSError, aio_pika.exceptions.AMQPError) as exc:
            log.warning("cannot reach RabbitMQ (%s); trying again in %.0f s", exc, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)


async def run_worker(settings: Settings) -> int:
    """Run until SIGTERM or SIGINT, then shut down gracefully; 1 when a part of it failed."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    worker = Worker(settings)
    starting = asyncio.create_task(worker.start())
    stopping = asyncio.create_task(stop.wait())
    await asyncio.wait({starting, stopping}, return_when=asyncio.FIRST_COMPLETED)
    if not starting.done():  # stopped while still waiting for the broker
        starting.cancel()
        await asyncio.gather(starting, return_exceptions=True)
        await worker.stop()
        return 0
    starting.result()
    failed = asyncio.create_task(worker.failed.wait())
    try:
        await asyncio.wait({stopping, failed}, return_when=asyncio.FIRST_COMPLETED)
        if failed.done():
            log.error("a part of the worker stopped unexpectedly; exiting to be restarted")
            return 1
        log.info(
            "stopping: finishing deliveries in flight (at most %.0f s)",
            settings.shutdown_grace_seconds,
        )
        return 0
    finally:
        stopping.cancel()
        failed.cancel()
        await worker.stop()
