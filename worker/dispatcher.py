"""Sending deliveries: those the consumer just made, and those that fall due (retries,
admin retries, claims of a crashed worker that ran out). Results are written in batches."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncEngine

from shared.delivery.policy import Outcome, RetryPolicy, decide
from shared.delivery.sender import Result, Sender
from shared.models import utcnow
from shared.settings import Settings
from worker import store

log = logging.getLogger("taskmanager.dispatcher")


@dataclass(frozen=True)
class DispatcherOptions:
    concurrency: int = 32
    claim_seconds: float = 60.0
    poll_seconds: float = 1.0
    # Results waiting to be written: flushed when this many are waiting or after `flush_seconds`.
    flush_batch: int = 200
    flush_seconds: float = 0.02


class Dispatcher:
    """Start with `run()` in a task; stop with `drain()`."""

    def __init__(
        self,
        engine: AsyncEngine,
        sender: Sender,
        policy: RetryPolicy,
        webhooks: store.Webhooks,
        name: str,
        options: DispatcherOptions | None = None,
    ) -> None:
        self.engine = engine
        self.sender = sender
        self.policy = policy
        self.webhooks = webhooks
        self.name = name
        self.options = options or DispatcherOptions()
        self._slots = asyncio.Semaphore(self.options.concurrency)
        self._inflight: dict[asyncio.Task[None], store.Claimed] = {}
        self._sending: set[int] = set()
        self._orphans: list[store.Claimed] = []
        self._done: list[store.Finished] = []
        self._have_done = asyncio.Event()
        self._wake = asyncio.Event()
        self._room = asyncio.Condition()
        self._stopping = False
        self._writer: asyncio.Task[None] | None = None

    @property
    def inflight(self) -> int:
        return len(self._inflight)

    def wake(self) -> None:
        self._wake.set()

    async def wait_for_room(self) -> None:
        """Back pressure for the consumer: hold new work while two rounds are waiting."""
        async with self._room:
            await self._room.wait_for(lambda: self.inflight < 2 * self.options.concurrency)

    def submit(self, deliveries: Sequence[store.Claimed]) -> None:
        if self._stopping:
            # Taken while shutting down: handed back by drain().
            self._orphans.extend(deliveries)
            return
        for delivery in deliveries:
            task = asyncio.create_task(self._deliver(delivery), name=f"delivery-{delivery.id}")
            self._inflight[task] = delivery
            task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._inflight.pop(task, None)
        if not task.cancelled() and task.exception() is not None:
            log.error("delivery task failed", exc_info=task.exception())

        async def notify() -> None:
            async with self._room:
                self._room.notify_all()

        if not self._stopping:
            asyncio.get_running_loop().create_task(notify())

    async def run(self) -> None:
        self._writer = asyncio.create_task(self._write_loop(), name="delivery-writer")
        while not self._stopping:
            free = self.options.concurrency - self.inflight
            if free > 0:
                try:
                    owner = store.new_owner(self.name)
                    async with self.engine.begin() as connection:
                        due = await store.claim_due(
                            connection, owner, free, self.options.claim_seconds, self.webhooks
                        )
                    self.submit(due)
                    if len(due) == free:
                        continue
                except Exception:
                    log.exception("taking due deliveries failed; trying again")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.options.poll_seconds)
            self._wake.clear()

    async def _deliver(self, delivery: store.Claimed) -> None:
        secret: str | None = None
        failure: str | None = None
        if delivery.webhook_id is not None:
            secret = self.webhooks.secrets.get(delivery.webhook_id)
            if secret is None:
                failure = "the webhook was deleted or disabled"
        async with self._slots:
            if self._stopping:
                return  # never started: handed back by drain()
            half = timedelta(seconds=self.options.claim_seconds / 2)
            if delivery.claimed_until - utcnow() < half:
                # Waited for a slot through half its claim: it could run out mid-send and
                # another worker take it. Left to whoever claims it next (maybe this one).
                log.warning("delivery %s waited out its claim; it is taken again", delivery.id)
                return
            self._sending.add(delivery.id)
            attempted_at = utcnow()
            try:
                if failure is None:
                    result = await self.sender.send(delivery.request(secret))
                else:
                    result = Result(
                        status_code=None, duration_ms=0.0, error=failure, permanent=True
                    )
            except Exception as exc:  # a bug must cost a retry, never the record
                log.exception("sending delivery %s failed unexpectedly", delivery.id)
                result = Result(status_code=None, duration_ms=0.0, error=repr(exc)[:500])
            finally:
                self._sending.discard(delivery.id)
        decision = decide(
            self.policy,
            attempt=delivery.attempts + 1,
            status_code=result.status_code,
            error=result.error,
            retry_after=result.retry_after,
            now=utcnow(),
            deadline=delivery.deadline_at,
            permanent=result.permanent,
        )
        if decision.outcome is not Outcome.delivered:
            log.info(
                "delivery %s to %s: %s (%s)",
                delivery.id,
                delivery.url,
                decision.outcome,
                result.status_code or result.error,
            )
        self._done.append(store.Finished(delivery, result, decision, attempted_at))
        self._have_done.set()

    async def _write_loop(self) -> None:
        """Writes results in batches; once stopping, writes what is left and ends."""
        while True:
            await self._have_done.wait()
            if len(self._done) < self.options.flush_batch and not self._stopping:
                await asyncio.sleep(self.options.flush_seconds)
            await self._flush()
            if self._stopping:
                return

    async def _flush(self) -> None:
        while self._done:
            batch, self._done = self._done, []
            self._have_done.clear()
            try:
                async with self.engine.begin() as connection:
                    await store.finish(connection, batch)
            except Exception:
                log.exception("recording %d delivery results failed; one by one now", len(batch))
                await self._flush_one_by_one(batch)

    async def _flush_one_by_one(self, batch: list[store.Finished]) -> None:
        """A result the database refuses must not hold back the others: each is tried on
        its own; one that still fails is dropped (its claim runs out and it is sent again)."""
        for finished in batch:
            for attempt in range(3):
                try:
                    async with self.engine.begin() as connection:
                        await store.finish(connection, [finished])
                    break
                except Exception:
                    log.exception("recording delivery %s failed", finished.delivery.id)
                    if self._stopping or attempt == 2:
                        break
                    await asyncio.sleep(1.0)

    async def drain(self, grace_seconds: float) -> None:
        """Stop taking work, let what is in flight finish within the grace period, record it.

        What could not finish is given back (its claim released), so it is sent again by
        whoever takes it next: at least once, never lost.
        """
        self._stopping = True
        self._wake.set()
        # Deliveries still waiting for a slot are not started at all; those being sent get
        # the grace period to finish.
        waiting = [d for d in self._inflight.values() if d.id not in self._sending]
        sending = [t for t, d in self._inflight.items() if d.id in self._sending]
        unfinished = list(waiting)
        if sending:
            _, late = await asyncio.wait(sending, timeout=grace_seconds)
            unfinished += [self._inflight[t] for t in late if t in self._inflight]
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)
        if self._writer is not None:
            # Not cancelled: a batch of results it holds must reach the database.
            self._have_done.set()
            try:
                await asyncio.wait_for(self._writer, timeout=max(5.0, grace_seconds))
            except TimeoutError:
                log.error("recording the last delivery results timed out")
        await self._flush()
        unfinished += self._orphans
        if unfinished:
            with contextlib.suppress(Exception):
                async with self.engine.begin() as connection:
                    await store.release(connection, unfinished)


def options_from(settings: Settings) -> DispatcherOptions:
    return DispatcherOptions(
        concurrency=settings.delivery_concurrency,
        claim_seconds=settings.delivery_claim_seconds,
        poll_seconds=settings.delivery_poll_seconds,
    )
