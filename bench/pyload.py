"""The fallback load generator: keep-alive HTTP/1.1 clients in a few processes.

Used when wrk is missing and cannot be installed. Each process runs its share of the
connections on one event loop; a connection sends the same request again as soon as the
previous response is read (closed loop, like wrk), and records every latency.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

HEAD_END = b"\r\n\r\n"


@dataclass
class Counts:
    ok: int = 0
    empty: int = 0
    other: int = 0
    errors: int = 0
    latencies: list[float] = field(default_factory=list)


def build_request(host: str, port: int, path: str, authorization: str | None, body: str) -> bytes:
    lines = [
        f"POST {path} HTTP/1.1",
        f"Host: {host}:{port}",
        "Content-Type: application/json",
        f"Content-Length: {len(body.encode())}",
    ]
    if authorization:
        lines.append(f"Authorization: {authorization}")
    return ("\r\n".join(lines) + "\r\n\r\n" + body).encode()


async def _read_response(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(HEAD_END)
    status_line, _, rest = head.partition(b"\r\n")
    status = int(status_line.split(b" ", 2)[1])
    headers = {}
    for line in rest.split(b"\r\n"):
        name, sep, value = line.partition(b":")
        if sep:
            headers[name.strip().lower()] = value.strip().lower()
    if headers.get(b"transfer-encoding") == b"chunked":
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            await reader.readexactly(size + 2)
            if size == 0:
                break
    else:
        await reader.readexactly(int(headers.get(b"content-length", b"0")))
    return status


async def _connection(
    host: str, port: int, request: bytes, deadline: float, counts: Counts
) -> None:
    writer: asyncio.StreamWriter | None = None
    reader: asyncio.StreamReader | None = None
    while time.monotonic() < deadline:
        if writer is None or reader is None:
            try:
                reader, writer = await asyncio.open_connection(host, port)
            except OSError:
                counts.errors += 1
                await asyncio.sleep(0.05)
                continue
        started = time.perf_counter()
        try:
            writer.write(request)
            status = await _read_response(reader)
        except (OSError, ValueError, IndexError, asyncio.IncompleteReadError):
            counts.errors += 1
            writer.close()
            writer = reader = None
            continue
        counts.latencies.append(time.perf_counter() - started)
        if status == 200:
            counts.ok += 1
        elif 200 <= status < 300:
            counts.empty += 1
        else:
            counts.other += 1
    if writer is not None:
        writer.close()


async def _drive(
    host: str, port: int, request: bytes, connections: int, seconds: float
) -> tuple[Counts, float]:
    counts = Counts()
    started = time.monotonic()
    deadline = started + seconds
    await asyncio.gather(
        *(_connection(host, port, request, deadline, counts) for _ in range(connections))
    )
    return counts, time.monotonic() - started


def drive(host: str, port: int, request: bytes, connections: int, seconds: float, out: str) -> None:
    """A process's entry point: run `connections` clients for `seconds`, write counts to `out`."""
    main = _drive(host, port, request, connections, seconds)
    try:
        import uvloop
    except ImportError:  # the standard loop is slower but measures the same thing
        counts, elapsed = asyncio.run(main)
    else:
        counts, elapsed = uvloop.run(main)
    result = {
        "ok": counts.ok,
        "empty": counts.empty,
        "other": counts.other,
        "errors": counts.errors,
        "seconds": elapsed,
        "latencies": counts.latencies,
    }
    Path(out).write_text(json.dumps(result))
