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
    flush_seconds: float = 0.05


class Dispatcher:
    """Start with `run()` in a task; stop with `drain()`.

    `concurrency` sender loops take deliveries from one queue and send them, one at a time
    each; results are written in batches by one writer.
    """

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
        self._queue: asyncio.Queue[store.Claimed] = asyncio.Queue()
        self._loops: list[asyncio.Task[None]] = []
        # Sender loop -> the delivery it is sending.
        self._sending: dict[asyncio.Task[None], store.Claimed] = {}
        self._orphans: list[store.Claimed] = []
        self._done: list[store.Finished] = []
        self._have_done = asyncio.Event()
        self._wake = asyncio.Event()
        self._room = asyncio.Event()
        self._room.set()
        self._stopping = False
        self._writer: asyncio.Task[None] | None = None

    @property
    def inflight(self) -> int:
        """Deliveries taken and not finished: waiting for a sender loop or being sent."""
        return self._queue.qsize() + len(self._sending)

    def wake(self) -> None:
        self._wake.set()

    async def wait_for_room(self) -> None:
        """Back pressure for the consumer: hold new work while two rounds are waiting."""
        while self.inflight >= 2 * self.options.concurrency:
            self._room.clear()
            await self._room.wait()

    def _start_loops(self) -> None:
        if not self._loops and not self._stopping:
            self._loops = [
                asyncio.create_task(self._send_loop(), name=f"sender-{n}")
                for n in range(max(1, self.options.concurrency))
            ]

    def submit(self, deliveries: Sequence[store.Claimed]) -> None:
        if self._stopping:
            # Taken while shutting down: handed back by drain().
            self._orphans.extend(deliveries)
            return
        self._start_loops()
        for delivery in deliveries:
            self._queue.put_nowait(delivery)

    async def _send_loop(self) -> None:
        me = asyncio.current_task()
        assert me is not None
        while not self._stopping:
            delivery = await self._queue.get()
            self._sending[me] = delivery
            try:
                await self._deliver(delivery)
            except Exception:
                log.exception("delivery %s failed unexpectedly", delivery.id)
            finally:
                del self._sending[me]
                if self.inflight < 2 * self.options.concurrency:
                    self._room.set()

    async def run(self) -> None:
        self._start_loops()
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
        if delivery.claimed_until - utcnow() < timedelta(seconds=self.options.claim_seconds / 2):
            # Waited for a sender through half its claim: it could run out mid-send and
            # another worker take it. Left to whoever claims it next (maybe this one).
            log.warning("delivery %s waited out its claim; it is taken again", delivery.id)
            return
        attempted_at = utcnow()
        try:
            if failure is None:
                result = await self.sender.send(delivery.request(secret))
            else:
                result = Result(status_code=None, duration_ms=0.0, error=failure, permanent=True)
        except Exception as exc:  # a bug must cost a retry, never the record
            log.exception("sending delivery %s failed unexpectedly", delivery.id)
            result = Result(status_code=None, duration_ms=0.0, error=repr(exc)[:500])
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
        # Deliveries still waiting for a sender are not started at all; those being sent
        # get the grace period to finish.
        unfinished: list[store.Claimed] = []
        while not self._queue.empty():
            unfinished.append(self._queue.get_nowait())
        sending = list(self._sending)
        for loop in self._loops:
            if loop not in self._sending:
                loop.cancel()  # idle, waiting for work
        if sending:
            _, late = await asyncio.wait(sending, timeout=grace_seconds)
            unfinished += [self._sending[t] for t in late if t in self._sending]
            for task in late:
                task.cancel()
        await asyncio.gather(*self._loops, return_exceptions=True)
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
