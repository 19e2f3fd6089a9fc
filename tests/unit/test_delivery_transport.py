"""The sender's HTTP transport (shared/delivery/transport.py) against a raw local server:
connections kept and reused, closed ones replaced, the connection limit, errors and timeouts
as httpx reports them, TLS."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import ssl
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import httpx
import pytest

from shared.delivery.sender import RESPONSE_KEEP, Request, Sender
from shared.delivery.transport import SpreadTransport

Handler = Callable[[str, asyncio.StreamReader, asyncio.StreamWriter], Awaitable[bool]]


class Server:
    """HTTP/1.1 on a raw socket: each request goes to `handler(path, reader, writer)`, which
    answers and returns whether to keep the connection open."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.connections = 0
        self.open = 0
        self.most_open = 0
        self.paths: list[str] = []
        self.port = 0
        self.handlers: set[asyncio.Task[None]] = set()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        me = asyncio.current_task()
        assert me is not None
        self.handlers.add(me)
        self.connections += 1
        self.open += 1
        self.most_open = max(self.most_open, self.open)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode().split("\r\n")
                path = lines[0].split()[1]
                length = 0
                for line in lines[1:]:
                    name, _, value = line.partition(":")
                    if name.lower() == "content-length":
                        length = int(value)
                await reader.readexactly(length)
                self.paths.append(path)
                if not await self.handler(path, reader, writer):
                    break
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass  # the client went away, or the test is over
        finally:
            self.open -= 1
            self.handlers.discard(me)
            writer.close()


@contextlib.asynccontextmanager
async def serving(
    handler: Handler, ssl_context: ssl.SSLContext | None = None
) -> AsyncIterator[Server]:
    server = Server(handler)
    listening = await asyncio.start_server(server._serve, "127.0.0.1", 0, ssl=ssl_context)
    server.port = listening.sockets[0].getsockname()[1]
    async with listening:
        try:
            yield server
        finally:
            for handler in list(server.handlers):
                handler.cancel()
            await asyncio.gather(*server.handlers, return_exceptions=True)


async def ok(path: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
    writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
    await writer.drain()
    return True


def request(port: int, path: str = "/cb", scheme: str = "http") -> Request:
    return Request(
        delivery_id=1,
        event_id="00000000-0000-4000-8000-000000000001",
        method="PUT",
        url=f"{scheme}://127.0.0.1:{port}{path}",
        content_type="application/json",
        body='{"n": 1}',
    )


async def test_a_connection_is_kept_for_the_next_request() -> None:
    async with serving(ok) as server:
        sender = Sender(connections=4)
        try:
            for _ in range(5):
                result = await sender.send(request(server.port))
                assert (result.status_code, result.response) == (200, "ok")
        finally:
            await sender.aclose()
    assert server.connections == 1
    assert len(server.paths) == 5


async def test_requests_never_use_more_connections_than_allowed() -> None:
    async def slow(path: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        await asyncio.sleep(0.05)
        return await ok(path, reader, writer)

    async with serving(slow) as server:
        sender = Sender(connections=3)
        try:
            results = await asyncio.gather(*(sender.send(request(server.port)) for _ in range(12)))
        finally:
            await sender.aclose()
    assert [r.status_code for r in results] == [200] * 12
    assert server.most_open <= 3
    assert server.connections == 3
    assert sender.transport.idle == 3


async def test_a_connection_the_server_closed_is_replaced() -> None:
    async def once(path: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
        await writer.drain()
        return False  # closes after answering, without saying so

    async with serving(once) as server:
        sender = Sender(connections=2)
        try:
            for _ in range(3):
                assert (await sender.send(request(server.port))).status_code == 200
                await asyncio.sleep(0.05)  # the close reaches the client
        finally:
            await sender.aclose()
    assert server.connections == 3


async def test_a_long_chunked_answer_is_cut_and_the_next_request_still_works() -> None:
    async def chunked(
        path: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> bool:
        writer.write(b"HTTP/1.1 500 Oops\r\ntransfer-encoding: chunked\r\nretry-after: 7\r\n\r\n")
        for _ in range(100):
            writer.write(b"400\r\n" + b"x" * 1024 + b"\r\n")
        writer.write(b"0\r\n\r\n")
        await writer.drain()
        return True

    async with serving(chunked) as server:
        sender = Sender(connections=1)
        try:
            first = await sender.send(request(server.port))
            second = await sender.send(request(server.port))
        finally:
            await sender.aclose()
    for result in (first, second):
        assert result.status_code == 500
        assert result.retry_after == "7"
        assert result.response == "x" * RESPONSE_KEEP


async def test_no_answer_is_a_read_timeout() -> None:
    async def silent(path: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        await asyncio.sleep(0.5)  # past the client's timeout
        return False

    async with serving(silent) as server:
        sender = Sender(timeout=0.2, connections=1)
        try:
            result = await sender.send(request(server.port))
            assert result.error is not None
            assert result.error.startswith("ReadTimeout")
            assert not result.permanent
            # The slot came back: the transport is usable again.
            assert sender.transport.idle == 1
        finally:
            await sender.aclose()


async def test_a_closed_port_is_a_connect_error_and_a_bad_scheme_is_permanent() -> None:
    async with serving(ok) as server:
        port = server.port
    sender = Sender(connections=1)
    try:
        refused = await sender.send(request(port))
        assert refused.error is not None
        assert refused.error.startswith("ConnectError")
        assert not refused.permanent
        bad = await sender.send(request(port, scheme="ftp"))
        assert bad.error is not None
        assert bad.error.startswith("UnsupportedProtocol")
        assert bad.permanent
        assert sender.transport.idle == 1
    finally:
        await sender.aclose()


async def test_a_request_cancelled_while_waiting_gives_no_slot_away() -> None:
    release = asyncio.Event()

    async def held(path: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        await release.wait()
        return await ok(path, reader, writer)

    async with serving(held) as server:
        transport = SpreadTransport(1)
        async with httpx.AsyncClient(transport=transport) as client:
            url = f"http://127.0.0.1:{server.port}/cb"
            busy = asyncio.create_task(client.put(url, content=b"1"))
            await asyncio.sleep(0.05)
            waiting = asyncio.create_task(client.put(url, content=b"2"))
            await asyncio.sleep(0.05)
            waiting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await waiting
            release.set()
            assert (await busy).status_code == 200
            assert transport.idle == 1
            assert (await client.put(url, content=b"3")).status_code == 200


async def test_connections_to_other_origins_are_replaced_when_no_slot_is_free() -> None:
    async with serving(ok) as one, serving(ok) as two:
        sender = Sender(connections=1)
        try:
            for port in (one.port, two.port, one.port):
                assert (await sender.send(request(port))).status_code == 200
        finally:
            await sender.aclose()
    assert (one.connections, two.connections) == (2, 1)


@pytest.fixture
def tls(tmp_path: Path) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """(server context, client context trusting the server's self-signed certificate)."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(cert, key)
    client = ssl.create_default_context(cafile=str(cert))
    return server, client


async def test_https_is_verified_and_kept_alive(
    tls: tuple[ssl.SSLContext, ssl.SSLContext],
) -> None:
    server_context, client_context = tls
    async with serving(ok, server_context) as server:
        trusting = Sender(connections=2, ssl_context=client_context)
        try:
            for _ in range(3):
                result = await trusting.send(request(server.port, scheme="https"))
                assert (result.status_code, result.response) == (200, "ok")
        finally:
            await trusting.aclose()
        assert server.connections == 1

        # The default context does not know the self-signed certificate.
        default = Sender(connections=1)
        try:
            refused = await default.send(request(server.port, scheme="https"))
        finally:
            await default.aclose()
    assert refused.error is not None
    assert refused.error.startswith("ConnectError")
    assert "CERTIFICATE_VERIFY_FAILED" in refused.error
