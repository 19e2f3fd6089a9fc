"""The sender's HTTP transport: httpcore's HTTP/1.1 connections on plain asyncio sockets.

httpx's default transport keeps every connection in one httpcore pool and runs it on anyio.
For a worker that does little but send small requests, both cost more than the requests
themselves: the pool examines each connection it holds for every request it assigns and
every response it finishes (half the worker's CPU with 32 connections), and anyio wraps each
read and write in cancel scopes, locks and attribute look-ups.

This transport has `connections` slots of one connection each. A request takes an idle slot,
one whose connection already speaks to the request's origin when there is one (a connection
is kept open for the next request there, `keepalive_expiry` seconds at most), and gives it
back when its response is closed; with every slot busy it waits for the next one given back.
The connection is httpcore's own HTTP/1.1 connection (h11), as with httpx's transport; only
the socket under it is asyncio's. HTTP/2, proxies (httpx mounts transports of its own for
those) and Unix sockets are not this transport's business.
"""

from __future__ import annotations

import asyncio
import ssl
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any, cast

import httpcore
import httpx

# Reading stops while this much arrived unread (a receiver answering with a flood).
_READ_HIGH_WATER = 256 * 1024

_ERRORS: dict[type[Exception], type[httpx.HTTPError]] = {
    httpcore.TimeoutException: httpx.TimeoutException,
    httpcore.ConnectTimeout: httpx.ConnectTimeout,
    httpcore.ReadTimeout: httpx.ReadTimeout,
    httpcore.WriteTimeout: httpx.WriteTimeout,
    httpcore.PoolTimeout: httpx.PoolTimeout,
    httpcore.NetworkError: httpx.NetworkError,
    httpcore.ConnectError: httpx.ConnectError,
    httpcore.ReadError: httpx.ReadError,
    httpcore.WriteError: httpx.WriteError,
    httpcore.ProxyError: httpx.ProxyError,
    httpcore.UnsupportedProtocol: httpx.UnsupportedProtocol,
    httpcore.ProtocolError: httpx.ProtocolError,
    httpcore.LocalProtocolError: httpx.LocalProtocolError,
    httpcore.RemoteProtocolError: httpx.RemoteProtocolError,
}


def _as_httpx(exc: BaseException) -> BaseException:
    """httpcore's exception as the httpx one httpx's own transport raises (the most
    specific match); any other exception as it is."""
    for cls in type(exc).__mro__:
        mapped = _ERRORS.get(cls)
        if mapped is not None:
            return mapped(str(exc))
    return exc


class _Protocol(asyncio.Protocol):
    """Receives into a queue of chunks; knows when the peer closed."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.chunks: deque[bytes] = deque()
        self.buffered = 0
        self.reading_paused = False
        self.closed = False
        self.error: Exception | None = None
        self.waiter: asyncio.Future[None] | None = None
        self.writing_paused = False
        self.drained: asyncio.Future[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are no subclasses of asyncio's, but behave as one.
        self.transport = cast(asyncio.Transport, transport)

    def _wake(self) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def data_received(self, data: bytes) -> None:
        self.chunks.append(data)
        self.buffered += len(data)
        if self.buffered > _READ_HIGH_WATER and not self.reading_paused and self.transport:
            self.reading_paused = True
            self.transport.pause_reading()
        self._wake()

    def eof_received(self) -> bool | None:
        self.closed = True
        self._wake()
        return None  # the transport closes itself

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.error = exc
        self._wake()
        self.writing_paused = False
        drained = self.drained
        if drained is not None and not drained.done():
            drained.set_result(None)

    def pause_writing(self) -> None:
        self.writing_paused = True

    def resume_writing(self) -> None:
        self.writing_paused = False
        drained = self.drained
        if drained is not None and not drained.done():
            drained.set_result(None)


def _expire(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_exception(TimeoutError())


async def _wait(future: asyncio.Future[None], seconds: float | None) -> None:
    """Await `future`, raising TimeoutError after `seconds` (None: no limit)."""
    if seconds is None:
        await future
        return
    handle = asyncio.get_running_loop().call_later(seconds, _expire, future)
    try:
        await future
    finally:
        handle.cancel()


class _Stream(httpcore.AsyncNetworkStream):
    """httpcore's view of one connection.

    Writes wait in a buffer until the next read (or close): httpcore writes a request's
    headers and its body separately and then reads the answer, so both leave in one send.
    """

    def __init__(self, transport: asyncio.Transport, protocol: _Protocol) -> None:
        self._transport = transport
        self._protocol = protocol
        self._pending: list[bytes] = []
        self._pending_bytes = 0

    def _flush(self) -> None:
        if self._pending:
            data = self._pending[0] if len(self._pending) == 1 else b"".join(self._pending)
            self._pending.clear()
            self._pending_bytes = 0
            self._transport.write(data)

    # httpcore's interface: a timeout per call.
    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:  # noqa: ASYNC109
        protocol = self._protocol
        if self._pending:
            if protocol.closed:
                raise httpcore.WriteError(str(protocol.error or "connection closed"))
            self._flush()
        if not protocol.chunks and not protocol.closed:
            protocol.waiter = asyncio.get_running_loop().create_future()
            try:
                await _wait(protocol.waiter, timeout)
            except TimeoutError:
                raise httpcore.ReadTimeout("timed out reading") from None
            finally:
                protocol.waiter = None
        if protocol.chunks:
            data = protocol.chunks.popleft()
            if len(data) > max_bytes:
                protocol.chunks.appendleft(data[max_bytes:])
                data = data[:max_bytes]
            protocol.buffered -= len(data)
            if protocol.reading_paused and protocol.buffered <= _READ_HIGH_WATER // 4:
                protocol.reading_paused = False
                self._transport.resume_reading()
            return data
        if protocol.error is not None:
            raise httpcore.ReadError(str(protocol.error))
        return b""

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:  # noqa: ASYNC109
        if not buffer:
            return
        protocol = self._protocol
        if protocol.closed or self._transport.is_closing():
            raise httpcore.WriteError(str(protocol.error or "connection closed"))
        self._pending.append(buffer)
        self._pending_bytes += len(buffer)
        if self._pending_bytes < 65536:
            return
        self._flush()
        if protocol.writing_paused:
            protocol.drained = asyncio.get_running_loop().create_future()
            try:
                await _wait(protocol.drained, timeout)
            except TimeoutError:
                raise httpcore.WriteTimeout("timed out writing") from None
            finally:
                protocol.drained = None
            if protocol.closed:
                raise httpcore.WriteError(str(protocol.error or "connection closed"))

    async def aclose(self) -> None:
        self._pending.clear()
        self._transport.close()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,  # noqa: ASYNC109
    ) -> httpcore.AsyncNetworkStream:
        self._flush()
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(timeout):
                transport = await loop.start_tls(
                    self._transport, self._protocol, ssl_context, server_hostname=server_hostname
                )
        except TimeoutError:
            self._transport.close()
            raise httpcore.ConnectTimeout("timed out in the TLS handshake") from None
        except (OSError, ssl.SSLError) as exc:
            self._transport.close()
            raise httpcore.ConnectError(str(exc)) from exc
        if transport is None:  # the connection was closed meanwhile
            raise httpcore.ConnectError("connection closed during the TLS handshake")
        self._protocol.transport = transport
        return _Stream(transport, self._protocol)

    def get_extra_info(self, info: str) -> Any:
        if info == "is_readable":
            # An idle connection that became readable was closed by the server.
            return bool(self._protocol.chunks) or self._protocol.closed
        if info == "ssl_object":
            return self._transport.get_extra_info("ssl_object")
        if info == "client_addr":
            return self._transport.get_extra_info("sockname")
        if info == "server_addr":
            return self._transport.get_extra_info("peername")
        if info == "socket":
            return self._transport.get_extra_info("socket")
        return None


async def connect_tcp(
    host: str,
    port: int,
    connect_timeout: float | None,
    socket_options: Iterable[tuple[Any, ...]] = (),
) -> _Stream:
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(connect_timeout):
            transport, protocol = await loop.create_connection(_Protocol, host, port)
    except TimeoutError:
        raise httpcore.ConnectTimeout(f"timed out connecting to {host}:{port}") from None
    except OSError as exc:
        raise httpcore.ConnectError(str(exc)) from exc
    sock = transport.get_extra_info("socket")
    for option in socket_options:
        sock.setsockopt(*option)
    return _Stream(transport, protocol)


class _Body(httpx.AsyncByteStream):
    """A response body: httpcore's, its errors as httpx's, and the slot given back once it
    is closed."""

    def __init__(self, stream: Any, give_back: Callable[[], None]) -> None:
        self._stream = stream
        self._give_back: Callable[[], None] | None = give_back

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._stream:
                yield chunk
        except Exception as exc:
            raise _as_httpx(exc) from exc

    async def aclose(self) -> None:
        try:
            await self._stream.aclose()
        except Exception as exc:
            raise _as_httpx(exc) from exc
        finally:
            if self._give_back is not None:
                give_back, self._give_back = self._give_back, None
                give_back()


# (scheme, host, port): httpcore's Origin compares but does not hash.
Key = tuple[bytes, bytes, int]


class _Slot:
    __slots__ = ("connection", "key")

    def __init__(self) -> None:
        self.connection: httpcore.AsyncHTTP11Connection | None = None
        self.key: Key | None = None


class SpreadTransport(httpx.AsyncBaseTransport):
    """See the module's docstring."""

    def __init__(
        self,
        connections: int,
        *,
        ssl_context: ssl.SSLContext | None = None,
        keepalive_expiry: float = 5.0,
    ) -> None:
        self._ssl = ssl_context or httpx.create_ssl_context()
        self._ssl.set_alpn_protocols(["http/1.1"])
        self._keepalive_expiry = keepalive_expiry
        self._slots = [_Slot() for _ in range(max(1, connections))]
        # Idle slots, least recently used first, with the origin each last spoke to.
        self._idle: OrderedDict[_Slot, Key | None] = OrderedDict(
            (slot, None) for slot in self._slots
        )
        self._by_origin: dict[Key, list[_Slot]] = {}
        self._waiting: deque[asyncio.Future[_Slot]] = deque()

    @property
    def idle(self) -> int:
        return len(self._idle)

    def _take(self, key: Key) -> _Slot | None:
        same = self._by_origin.get(key)
        if same:
            slot = same.pop()
            if not same:
                del self._by_origin[key]
            del self._idle[slot]
            return slot
        if not self._idle:
            return None
        slot, last = self._idle.popitem(last=False)
        if last is not None:
            others = self._by_origin[last]
            others.remove(slot)
            if not others:
                del self._by_origin[last]
        return slot

    def _give_back(self, slot: _Slot) -> None:
        while self._waiting:
            waiter = self._waiting.popleft()
            if not waiter.done():
                waiter.set_result(slot)
                return
        self._idle[slot] = slot.key
        if slot.key is not None:
            self._by_origin.setdefault(slot.key, []).append(slot)

    async def _wait(self) -> _Slot:
        waiter: asyncio.Future[_Slot] = asyncio.get_running_loop().create_future()
        self._waiting.append(waiter)
        try:
            return await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                # Handed a slot just as it was cancelled: pass it on.
                self._give_back(waiter.result())
            raise

    async def _connection(
        self, slot: _Slot, key: Key, request: httpx.Request
    ) -> httpcore.AsyncHTTP11Connection:
        connection = slot.connection
        if connection is not None:
            if slot.key == key and connection.is_idle() and not connection.has_expired():
                return connection
            slot.connection = None
            await connection.aclose()
        scheme, raw_host, port = key
        timeout = request.extensions.get("timeout", {}).get("connect")
        host = raw_host.decode("ascii")
        stream: httpcore.AsyncNetworkStream = await connect_tcp(host, port, timeout)
        if scheme == b"https":
            sni = request.extensions.get("sni_hostname") or host
            stream = await stream.start_tls(self._ssl, server_hostname=sni, timeout=timeout)
        slot.connection = httpcore.AsyncHTTP11Connection(
            origin=httpcore.Origin(scheme, raw_host, port),
            stream=stream,
            keepalive_expiry=self._keepalive_expiry,
        )
        slot.key = key
        return slot.connection

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        scheme = url.raw_scheme
        if scheme not in (b"http", b"https"):
            if not scheme:
                raise httpx.UnsupportedProtocol(
                    "Request URL is missing an 'http://' or 'https://' protocol."
                )
            raise httpx.UnsupportedProtocol(
                f"Request URL has an unsupported protocol '{scheme.decode()}://'."
            )
        if not url.raw_host:
            raise httpx.UnsupportedProtocol("Request URL is missing a host.")
        key = (scheme, url.raw_host, url.port or (443 if scheme == b"https" else 80))
        slot = self._take(key) or await self._wait()
        try:
            connection = await self._connection(slot, key, request)
            assert isinstance(request.stream, httpx.AsyncByteStream)
            response = await connection.handle_async_request(
                httpcore.Request(
                    method=request.method,
                    url=httpcore.URL(
                        scheme=scheme, host=url.raw_host, port=url.port, target=url.raw_path
                    ),
                    headers=request.headers.raw,
                    content=request.stream,
                    extensions=request.extensions,
                )
            )
        except BaseException as exc:
            self._give_back(slot)
            mapped = _as_httpx(exc)
            if mapped is exc:
                raise
            raise mapped from exc
        return httpx.Response(
            status_code=response.status,
            headers=response.headers,
            stream=_Body(response.stream, lambda: self._give_back(slot)),
            extensions=response.extensions,
        )

    async def aclose(self) -> None:
        for slot in self._slots:
            if slot.connection is not None:
                connection, slot.connection = slot.connection, None
                await connection.aclose()
