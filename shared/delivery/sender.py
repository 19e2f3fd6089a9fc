"""Sending one delivery over HTTP, with one shared client and per-host netrc credentials."""

from __future__ import annotations

import asyncio
import netrc
import ssl
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from shared import __version__
from shared.delivery.signing import sign
from shared.delivery.transport import SpreadTransport

RESPONSE_KEEP = 1024
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
        self._auth: dict[str, httpx.BasicAuth] = {}
        self._headers: dict[str, str] = {}
        if path is not None:
            parsed = netrc.netrc(str(path))
            for host, (login, _account, password) in parsed.hosts.items():
                auth = httpx.BasicAuth(login or "", password or "")
                self._auth[host.lower()] = auth
                # The header exactly as httpx's own Basic auth makes it, made once.
                flow = auth.sync_auth_flow(httpx.Request("GET", "http://netrc.invalid/"))
                self._headers[host.lower()] = next(flow).headers["authorization"]

    @staticmethod
    def _host(url: str) -> str:
        return (urlsplit(url).hostname or "").lower()

    def for_url(self, url: str) -> httpx.BasicAuth | None:
        if not self._auth:
            return None
        host = self._host(url)
        return self._auth.get(host) or self._auth.get("default")

    def authorization(self, url: str) -> str | None:
        """The `authorization` header value for a request to `url`, or None."""
        if not self._headers:
            return None
        host = self._host(url)
        return self._headers.get(host) or self._headers.get("default")


class Sender:
    """Sends deliveries with one shared httpx client."""

    def __init__(
        self,
        credentials: Credentials | None = None,
        *,
        timeout: float = 10.0,
        connections: int = 32,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.credentials = credentials or Credentials(None)
        self.timeout = timeout
        self.transport = SpreadTransport(connections, ssl_context=ssl_context)
        self.client = httpx.AsyncClient(
            transport=self.transport,
            timeout=timeout,
            # Not followed: httpx would repeat a PUT or POST after a 301/302/303 as a GET
            # without its body (XNAT answers an expired login with a redirect), and a 2xx
            # to that GET is no delivery. A 3xx is a failure the delivery records.
            follow_redirects=False,
        )
        # What every request carries besides its own headers (the client's defaults are not
        # merged in: requests are built by `send`).
        self._headers = {"accept": "*/*", "user-agent": f"TaskManager/{__version__}"}

    async def aclose(self) -> None:
        await self.client.aclose()

    async def send(self, request: Request) -> Result:
        body = request.body.encode()
        headers = {"content-type": request.content_type, "webhook-id": request.event_id}
        if request.secret is not None:
            timestamp = int(time.time())
            headers["webhook-timestamp"] = str(timestamp)
            headers["webhook-signature"] = sign(request.secret, request.event_id, timestamp, body)
        else:
            # Credentials are for the systems that asked for a callback (XNAT, the
            # Syncotron), never for webhook subscribers.
            authorization = self.credentials.authorization(request.url)
            if authorization is not None:
                headers["authorization"] = authorization
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
                # Built here, not by `client.build_request`: merging the client's defaults
                # (headers, cookies, params) into every request cost a tenth of the worker.
                headers.update(self._headers)
                response = await self.client.send(
                    httpx.Request(request.method, request.url, content=body, headers=headers),
                    stream=True,
                )
                try:
                    kept = b""
                    async for chunk in response.aiter_bytes():
                        kept += chunk
                        if len(kept) >= RESPONSE_KEEP:
                            break
                finally:
                    await response.aclose()
        except (httpx.InvalidURL, httpx.UnsupportedProtocol) as exc:
            return failed(exc, permanent=True)
        except (httpx.HTTPError, TimeoutError) as exc:
            return failed(exc)
        return Result(
            status_code=response.status_code,
            duration_ms=(time.perf_counter() - started) * 1000,
            response=clean(kept[:RESPONSE_KEEP].decode("utf-8", errors="replace"), RESPONSE_KEEP)
            if kept
            else None,
            retry_after=response.headers.get("retry-after"),
        )


def clean(text: str, limit: int) -> str:
    """Text a database column takes: no NUL (PostgreSQL refuses it), at most `limit` long."""
    return text.replace("\x00", "")[:limit]
