"""Token buckets, one per key, in this process: the rate limits of SCIM (per directory) and GraphQL (per API key).

Each key's bucket holds up to ``burst`` requests and refills at ``rate`` per second; a request that finds it empty
is told how long to wait. Buckets live in memory, so with N gateway processes a key may make up to N times the
limit: they guard one process's capacity against one tenant's runaway client, not an exact quota.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

_ROUNDING = 1e-9  # a client that waited exactly the time it was told is admitted despite float rounding
_MAX_BUCKETS = 10_000  # past this many keys, full buckets (the same as none) are dropped


@dataclass
class _Bucket:
    tokens: float
    updated: float


class TokenBuckets:
    """A token bucket per key, created on a key's first request."""

    def __init__(self, *, rate: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.burst = max(1, burst)
        self._clock = clock
        self._buckets: dict[str, _Bucket] = {}
        # SCIM admits requests on the database's threads (inside their transaction, right after authentication).
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        """False when the rate is 0: every request is admitted."""
        return self.rate > 0

    def acquire(self, key: str, *, take: bool = True, amount: float = 1.0) -> float:
        """Take ``amount`` (one request, or an operation's cost) from ``key``'s bucket: 0.0 if admitted, else the
        seconds until it holds that much (or all it can hold). ``take=False`` only looks."""
        if not self.enabled:
            return 0.0
        need = min(amount, self.burst)
        with self._lock:
            now = self._clock()
            bucket = self._bucket(key, now, create=take)
            if bucket is None:
                return 0.0
            if bucket.tokens >= need - _ROUNDING:
                if take:
                    bucket.tokens = max(0.0, bucket.tokens - amount)
                return 0.0
            return (need - bucket.tokens) / self.rate

    def charge(self, key: str, amount: float) -> None:
        """Take ``amount`` more from ``key``'s bucket for work already done (a PATCH's size is known once it ran):
        the bucket may go below empty, down to minus its burst, and the next requests wait for it to refill."""
        if not self.enabled or amount <= 0:
            return
        with self._lock:
            bucket = self._bucket(key, self._clock(), create=True)
            assert bucket is not None
            bucket.tokens = max(-float(self.burst), bucket.tokens - amount)

    def refund(self, key: str, amount: float = 1.0) -> None:
        """Give ``key``'s bucket back ``amount`` that ``acquire`` took for a request that turned out not to count
        (never above its burst)."""
        if not self.enabled or amount <= 0:
            return
        with self._lock:
            bucket = self._bucket(key, self._clock(), create=False)
            if bucket is not None:
                bucket.tokens = min(float(self.burst), bucket.tokens + amount)

    def _bucket(self, key: str, now: float, *, create: bool) -> _Bucket | None:
        bucket = self._buckets.get(key)
        if bucket is None:
            if not create:
                return None
            if len(self._buckets) >= _MAX_BUCKETS:
                self._drop_full(now)
            bucket = self._buckets[key] = _Bucket(tokens=self.burst, updated=now)
        else:
            bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.updated) * self.rate)
            bucket.updated = now
        return bucket

    def _drop_full(self, now: float) -> None:
        # Keys are client addresses or ids a flood may make up: memory stays bounded.
        full = [k for k, b in self._buckets.items() if b.tokens + (now - b.updated) * self.rate >= self.burst]
        for key in full:
            del self._buckets[key]


def retry_after(wait_seconds: float) -> int:
    """Whole seconds to wait (RFC 9110 §10.2.3 ``Retry-After``), rounded up so a client that obeys is admitted."""
    return max(1, math.ceil(wait_seconds))
