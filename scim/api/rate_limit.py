"""The per-directory SCIM rate limit: a token bucket per directory, in this process.

Each directory's bucket holds up to ``burst`` requests and refills at ``rate`` per second; a request that finds it
empty answers 429 with ``Retry-After``. Buckets live in memory, so with N gateway processes behind a load balancer
a directory may send up to N times the limit: the limit guards one process's capacity (above all SQLite's single
writer) against one tenant's runaway client, not an exact quota.

Only authenticated requests are counted (see ``scim.api.calls.Call.admit``): the directory id is in the URL, not a
secret, so counting before authentication would let anyone who knows it use up the budget and stall that directory's
real provisioning; and buckets can only be created for real directories, whatever ids a flood makes up.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from scim.protocol.errors import ScimError

_ROUNDING = 1e-9  # a client that waited exactly the time it was told is admitted despite float rounding


@dataclass
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    def __init__(self, *, rate: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.burst = max(1, burst)
        self._clock = clock
        self._buckets: dict[str, _Bucket] = {}
        # Requests are admitted on the database's threads (inside their transaction, right after authentication).
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return self.rate > 0

    def acquire(self, key: str) -> float:
        """Take one request from ``key``'s bucket: 0.0 if admitted, else the seconds until one is available."""
        if not self.enabled:
            return 0.0
        with self._lock:
            now = self._clock()
            bucket = self._buckets.get(key)
            if bucket is None:
                bucket = self._buckets[key] = _Bucket(tokens=self.burst, updated=now)
            else:
                bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.updated) * self.rate)
                bucket.updated = now
            if bucket.tokens >= 1 - _ROUNDING:
                bucket.tokens = max(0.0, bucket.tokens - 1)
                return 0.0
            return (1 - bucket.tokens) / self.rate

    def refusal(self, key: str) -> ScimError | None:
        """None if ``key`` may make one more request now, else the 429 to answer (no ``scimType``: RFC 7644
        defines none for it)."""
        wait = self.acquire(key)
        if not wait:
            return None
        seconds = retry_after(wait)
        return ScimError(
            429,
            f"Too many requests for this directory (limit: {self.rate:g} per second, bursts of {self.burst}); "
            f"retry after {seconds} s",
            headers={"Retry-After": seconds},
        )


def retry_after(wait_seconds: float) -> str:
    """``Retry-After`` in whole seconds (RFC 9110 §10.2.3), rounded up so a client that obeys it is admitted."""
    return str(max(1, math.ceil(wait_seconds)))
