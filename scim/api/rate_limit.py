"""The SCIM rate limits, in this process: a token bucket per directory for authenticated requests, and one per client
address for requests whose bearer token is missing or wrong.

Each directory's bucket holds up to ``burst`` requests and refills at ``rate`` per second; a request that finds it
empty answers 429 with ``Retry-After``. Buckets live in memory, so with N gateway processes behind a load balancer
a directory may send up to N times the limit: the limit guards one process's capacity (above all SQLite's single
writer) against one tenant's runaway client, not an exact quota.

Only authenticated requests are counted (see ``scim.api.calls.Call.admit``): the directory id is in the URL, not a
secret, so counting before authentication would let anyone who knows it use up the budget and stall that directory's
real provisioning; and buckets can only be created for real directories, whatever ids a flood makes up.

Failed authentications are counted per client address instead (``Doorman``): once an address has used up its
budget, its requests answer 429 before any database work, unless they carry credentials this process has seen
succeed lately, so a tenant behind the same address as a flood (a NAT, a shared proxy) keeps working.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable

from gateway.ops.token_buckets import TokenBuckets, retry_after
from scim.protocol.errors import ScimError

__all__ = ["Doorman", "RateLimiter"]

_KNOWN_CREDENTIALS = 10_000


class RateLimiter(TokenBuckets):
    """A token bucket per directory (keyed by its id)."""

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
            headers={"Retry-After": str(seconds)},
        )


class Doorman:
    """Requests with a missing or wrong token, counted per client address (see the module's docstring)."""

    def __init__(self, *, rate: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.limiter = TokenBuckets(rate=rate, burst=max(1, math.ceil(2 * rate)), clock=clock)
        # (directory id, token hash) pairs that authenticated lately: they pass the door whatever their address did.
        self._known: OrderedDict[tuple[str, str], None] = OrderedDict()
        self._lock = threading.Lock()

    def refusal(self, address: str, credentials: tuple[str, str] | None) -> ScimError | None:
        """The 429 for a request from an address that used up its failures, unless its credentials worked lately."""
        if credentials is not None:
            with self._lock:
                if credentials in self._known:
                    return None
        wait = self.limiter.acquire(address, take=False)
        if not wait:
            return None
        seconds = retry_after(wait)
        return ScimError(
            429,
            f"Too many requests with a missing or invalid bearer token from this address; retry after {seconds} s",
            headers={"Retry-After": str(seconds)},
        )

    def failed(self, address: str, credentials: tuple[str, str] | None) -> None:
        """Count a failed authentication against its address (and forget the credentials if they once worked)."""
        if credentials is not None:
            with self._lock:
                self._known.pop(credentials, None)
        self.limiter.acquire(address)

    def succeeded(self, credentials: tuple[str, str]) -> None:
        with self._lock:
            self._known[credentials] = None
            self._known.move_to_end(credentials)
            if len(self._known) > _KNOWN_CREDENTIALS:
                self._known.popitem(last=False)
