"""Sending one delivery over HTTP, with one shared client and per-host netrc credentials."""

from __future__ import annotations

import asyncio
import itertools
import netrc
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from shared import __version__
from shared.delivery.signing import sign

RESPONSE_KEEP = 1024
CONNECTIONS_PER_POOL = 4
ERROR_KEEP = 500


@dataclass(frozen=True)
class Request:
    """What to send; built from a delivery row (and its webhook's secret, for a webhook)."""

    delivery_id: int
    event_id: str
    method: str
    url: str
    content_type: str
    body: str
    secret: str | None = None


@dataclass(frozen=True)
class Result:
    status_code: int | None
    duration_ms: float
    error: str | None = None
    response: str | None = None
    retry_after: str | None = None
    # The request cannot be made at all (a malformed URL): retrying cannot help.
    permanent: bool = False


class Credentials:
    """Basic credentials per host from a netrc file, as XNAT and the Syncotron expect."""

    def __init__(self, path: Path | None) -> None:
        self._hosts: dict[str, tuple[str, str]] = {}
        if path is not None:
            parsed = netrc.netrc(str(path))
            for host, (login, _account, password) in parsed.hosts.items():
                self._hosts[host.lower()] = (login or "", password or "")

    def for_url(self, url: str) -> httpx.BasicAuth | None:
        host = (urlsplit(url).hostname or "").lower()
        found = self._hosts.get(host) or self._hosts.get("default")
        return httpx.BasicAuth(*found) if found else None


class Sender:
    def __init__(
        self,
        credentials: Credentials | None = None,
        *,
        timeout: float = 10.0,
        connections: int = 32,
        **client: Any,
    ) -> None:
        self.credentials = credentials or Credentials(None)
        self.timeout = timeout
        # httpcore's pool checks every connection it holds for every request, so one pool of
        # many connections costs more per request the more it holds (half the worker's CPU
        # at 32). The connections are split over small pools taken in turn instead.
        pools = max(1, connections // CONNECTIONS_PER_POOL)
        per_pool = max(1, connections // pools)
        self.clients = [
            httpx.AsyncClient(
                timeout=timeout,
                # Not followed: httpx would repeat a PUT or POST after a 301/302/303 as a GET
                # without its body (XNAT answers an expired login with a redirect), and a 2xx
                # to that GET is no delivery. A 3xx is a failure the delivery records.
                follow_redirects=False,
                headers={"user-agent": f"TaskManager/{__version__}"},
                limits=httpx.Limits(max_connections=per_pool, max_keepalive_connections=per_pool),
                **client,
            )
            for _ in range(pools)
        ]
        self._next = itertools.cycle(self.clients)

    async def aclose(self) -> None:
        for client in self.clients:
            await client.aclose()

    async def send(self, request: Request) -> Result:
        body = request.body.encode()
        headers = {"content-type": request.content_type, "webhook-id": request.event_id}
        if request.secret is not None:
            timestamp = int(time.time())
            headers["webhook-timestamp"] = str(timestamp)
            headers["webhook-signature"] = sign(request.secret, request.event_id, timestamp, body)
        # Credentials are for the systems that asked for a callback (XNAT, the Syncotron),
        # never for webhook subscribers.
        auth = self.credentials.for_url(request.url) if request.secret is None else None
        started = time.perf_counter()

        def failed(exc: BaseException, permanent: bool = False) -> Result:
            return Result(
                status_code=None,
                duration_ms=(time.perf_counter() - started) * 1000,
                error=clean(f"{type(exc).__name__}: {exc}", ERROR_KEEP),
                permanent=permanent,
            )

        try:
            # The whole exchange is bounded, also against a receiver that trickles bytes;
            # of the answer only the first KiB is read.
            async with asyncio.timeout(self.timeout + 5):
                client = next(self._next)
                async with client.stream(
                    request.method, request.url, content=body, headers=headers, auth=auth
                ) as response:
                    kept = b""
                    async for chunk in response.aiter_bytes():
                        kept += chunk
                        if len(kept) >= RESPONSE_KEEP:
                            break
        except (httpx.InvalidURL, httpx.UnsupportedProtocol) as exc:
            return failed(exc, permanent=True)
        except (httpx.HTTPError, TimeoutError) as exc:
            return failed(exc)
        return Result(
            status_code=response.status_code,
            duration_ms=(time.perf_counter() - started) * 1000,
            response=clean(kept[:RESPONSE_KEEP].decode("utf-8", errors="replace"), RESPONSE_KEEP),
            retry_after=response.headers.get("retry-after"),
        )


def clean(text: str, limit: int) -> str:
    """Text a database column takes: no NUL (PostgreSQL refuses it), at most `limit` long."""
    return text.replace("\x00", "")[:limit]
