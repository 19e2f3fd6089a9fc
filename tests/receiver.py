"""A local HTTP receiver for callbacks and webhooks, served by uvicorn in the test's loop."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    at: float


@dataclass
class Receiver:
    """Records every request. `/ok/...` answers 200; `/slow/MS/...` 200 after MS ms;
    `/redirect/...` 302 to /ok/login; `/binary/...` 200 with NUL bytes in 3 kB of text;
    `/flaky/N/...` 503 for its first N requests, then 200; `/status/CODE/...` answers CODE
    until `fixed` lists the path."""

    port: int = 0
    received: list[Received] = field(default_factory=list)
    fixed: set[str] = field(default_factory=set)
    _seen: Counter[str] = field(default_factory=Counter)
    _arrived: asyncio.Event = field(default_factory=asyncio.Event)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def to(self, prefix: str) -> list[Received]:
        return [r for r in self.received if r.path.startswith(prefix)]

    async def _handle(self, request: Request) -> PlainTextResponse:
        path = request.url.path
        self.received.append(
            Received(request.method, path, dict(request.headers), await request.body(), time.time())
        )
        self._seen[path] += 1
        self._arrived.set()
        parts = path.strip("/").split("/")
        if parts[0] == "flaky" and self._seen[path] <= int(parts[1]):
            return PlainTextResponse("not yet", status_code=503)
        if parts[0] == "slow":
            await asyncio.sleep(int(parts[1]) / 1000)
        if parts[0] == "redirect":
            return PlainTextResponse("", status_code=302, headers={"location": "/ok/login"})
        if parts[0] == "binary":
            return PlainTextResponse("a\x00b" * 1000)
        if parts[0] == "status" and path not in self.fixed:
            return PlainTextResponse("no such thing here", status_code=int(parts[1]))
        return PlainTextResponse("ok")

    async def wait_for(self, predicate: Callable[[], bool], within: float = 30.0) -> None:
        """Wait until `predicate()` is true (checked after every request)."""
        deadline = time.monotonic() + within
        while not predicate():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"timed out; received {len(self.received)} requests")
            self._arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), min(remaining, 0.5))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.asynccontextmanager
async def serve_receiver() -> AsyncIterator[Receiver]:
    receiver = Receiver(port=_free_port())
    app = Starlette(
        routes=[Route("/{path:path}", receiver._handle, methods=["GET", "POST", "PUT"])]
    )
    server = uvicorn.Server(
        uvicorn.Config(
            app, host="127.0.0.1", port=receiver.port, log_level="warning", lifespan="off"
        )
    )
    task = asyncio.create_task(server.serve())
    while not server.started:  # noqa: ASYNC110 (uvicorn offers no event to wait on)
        await asyncio.sleep(0.01)
    try:
        yield receiver
    finally:
        server.should_exit = True
        await task


class ThreadedReceiver:
    """The receiver on a loop of its own in a thread, for tests that are not async."""

    def __init__(self) -> None:
        import threading

        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.receiver: Receiver | None = None
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        async with serve_receiver() as receiver:
            self.receiver = receiver
            self._ready.set()
            await self._stop.wait()

    def __enter__(self) -> Receiver:
        self._thread.start()
        self._ready.wait(30)
        assert self.receiver is not None
        return self.receiver

    def __exit__(self, *_: object) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)


def wait_until(predicate: Callable[[], bool], within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within:.0f} s waiting for {what}")
        time.sleep(0.1)
