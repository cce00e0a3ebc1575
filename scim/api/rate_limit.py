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

from gateway.ops.token_buckets import TokenBuckets, retry_after
from scim.protocol.errors import ScimError

__all__ = ["RateLimiter"]


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
