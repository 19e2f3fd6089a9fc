"""Sending one delivery over HTTP, with one shared client and per-host netrc credentials."""

from __future__ import annotations

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
        # httpcore's pool checks every connection it holds for every request, so one pool of
        # many connections costs more per request the more it holds (half the worker's CPU
        # at 32). The connections are split over small pools taken in turn instead.
        pools = max(1, connections // CONNECTIONS_PER_POOL)
        per_pool = max(1, connections // pools)
        self.clients = [
            httpx.AsyncClient(
                timeout=timeout,
                follow_redirects=True,
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
        started = time.perf_counter()
        try:
            response = await next(self._next).request(
                request.method,
                request.url,
                content=body,
                headers=headers,
                auth=self.credentials.for_url(request.url),
            )
        except (httpx.InvalidURL, httpx.UnsupportedProtocol) as exc:
            return Result(
                status_code=None,
                duration_ms=(time.perf_counter() - started) * 1000,
                error=f"{type(exc).__name__}: {exc}"[:ERROR_KEEP],
                permanent=True,
            )
        except httpx.HTTPError as exc:
            return Result(
                status_code=None,
                duration_ms=(time.perf_counter() - started) * 1000,
                error=f"{type(exc).__name__}: {exc}"[:ERROR_KEEP],
            )
        return Result(
            status_code=response.status_code,
            duration_ms=(time.perf_counter() - started) * 1000,
            response=response.text[:RESPONSE_KEEP],
            retry_after=response.headers.get("retry-after"),
        )
