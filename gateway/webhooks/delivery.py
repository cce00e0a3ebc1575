"""One HTTP attempt to deliver a webhook: a POST with a timeout, redirects not followed, the response body read up
to a cap, and (unless the endpoint may reach private networks) every address its host resolves to checked first."""

from __future__ import annotations

import asyncio
import socket
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx

from gateway.ops.webhook_urls import is_public_address
from gateway.webhooks.signing import SIGNATURE_HEADER, signature_header

MAX_RESPONSE_BYTES = 64 * 1024  # read no further: a receiver's answer only matters by its status
_MAX_ERROR_CHARS = 500
_RESOLVED_SECONDS = 30.0


@dataclass(frozen=True)
class AttemptResult:
    """What one HTTP attempt gave: a 2xx status is a delivery; anything else (or no answer) is retried."""

    status_code: int | None
    duration_ms: float
    error: str | None

    @property
    def delivered(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


class DeliveryClient:
    """The worker's HTTP client: one connection pool for every endpoint."""

    def __init__(self, *, timeout_seconds: float, max_connections: int = 100) -> None:
        self._http = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout_seconds),
            follow_redirects=False,
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
            headers={"User-Agent": "dsync-webhooks/1"},
            trust_env=False,  # a proxy from the environment would hide the real target from the address check
        )
        self._resolved: dict[str, tuple[float, bool]] = {}

    async def close(self) -> None:
        """Close every pooled connection."""
        await self._http.aclose()

    async def post(self, *, url: str, body: bytes, secret: str, allow_private: bool) -> AttemptResult:
        """POST one signed body; never raises for what the network or the receiver does."""
        started = time.perf_counter()
        try:
            if not allow_private and not await self._resolves_public(url):
                return _failed(started, "refused: the host resolves to a loopback, private or link-local address")
            headers = {
                "Content-Type": "application/json",
                SIGNATURE_HEADER: signature_header(secret=secret, body=body),
            }
            async with self._http.stream("POST", url, content=body, headers=headers) as response:
                received = 0
                async for chunk in response.aiter_raw():
                    received += len(chunk)
                    if received >= MAX_RESPONSE_BYTES:
                        break
                status = response.status_code
        except httpx.HTTPError as exc:
            return _failed(started, f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)
        except OSError as exc:
            return _failed(started, f"{type(exc).__name__}: {exc}")
        elapsed = (time.perf_counter() - started) * 1000
        error = None if 200 <= status < 300 else f"HTTP {status}"
        return AttemptResult(status_code=status, duration_ms=elapsed, error=error)

    async def _resolves_public(self, url: str) -> bool:
        host = urlsplit(url).hostname or ""
        cached = self._resolved.get(host)
        now = time.monotonic()
        if cached is not None and now - cached[0] < _RESOLVED_SECONDS:
            return cached[1]
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(host, None, type=socket.SOCK_STREAM)
        except OSError:
            return True  # unresolvable: the attempt fails on its own with a clear error
        public = bool(infos) and all(is_public_address(str(info[4][0])) for info in infos)
        self._resolved[host] = (now, public)
        return public


def _failed(started: float, error: str) -> AttemptResult:
    return AttemptResult(
        status_code=None, duration_ms=(time.perf_counter() - started) * 1000, error=error[:_MAX_ERROR_CHARS]
    )
