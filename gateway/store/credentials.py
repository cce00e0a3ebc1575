"""Bearer tokens and API keys: generated with 256 random bits, stored only as SHA-256 hashes."""

from __future__ import annotations

import hashlib
import hmac
import secrets

TOKEN_BYTES = 32  # 256 bits: random enough that a fast hash is a safe way to store them


def new_secret(prefix: str) -> str:
    """A new SCIM bearer token or API key (``prefix`` says which: ``dsync_scim_``, ``dsync_key_``), shown once."""
    return f"{prefix}{secrets.token_urlsafe(TOKEN_BYTES)}"


def hash_secret(secret: str) -> str:
    """What the store keeps of a secret, and looks it up by."""
    # A slow password hash buys nothing for 256-bit random secrets and would cost every request.
    return hashlib.sha256(secret.encode()).hexdigest()


def secret_matches(secret: str, stored_hash: str) -> bool:
    """Whether a presented secret is the one whose hash is stored (in constant time)."""
    return hmac.compare_digest(hash_secret(secret), stored_hash)
