"""The WorkOS webhook format: body ``{"id", "event", "data", "created_at"}`` and the ``WorkOS-Signature`` header,
``t=<milliseconds>, v1=<hex HMAC-SHA256(secret, "<t>.<raw body>")>``, which the WorkOS SDKs' ``verify_event``
checks."""

from __future__ import annotations

import hashlib
import hmac
import time
from typing import Any

from gateway.events.payloads import iso
from gateway.store.serialization import dumps_bytes

SIGNATURE_HEADER = "WorkOS-Signature"


# The log's directory states, as WorkOS names a directory's state.
_WORKOS_DIRECTORY_STATES = {"linked": "active", "unlinked": "inactive"}


def webhook_body(row: Any) -> bytes:
    """The raw JSON body of one event row's delivery."""
    payload = {
        "id": row.id,
        "event": row.event,
        "data": workos_data(row.event, row.data),
        "created_at": iso(row.created_at),
    }
    return dumps_bytes(payload)


def workos_data(event: str, data: dict[str, Any]) -> dict[str, Any]:
    """An event's data as WorkOS sends it. User, group and membership payloads are stored in WorkOS's shape already;
    the directory of ``dsync.activated`` / ``dsync.deleted`` gets WorkOS's state names, ``domains`` and
    ``external_key`` (the directory's id: the key an application knows it by)."""
    if data.get("object") != "directory":
        return data
    state = str(data.get("state", ""))
    return {
        **data,
        "state": _WORKOS_DIRECTORY_STATES.get(state, state),
        "domains": data.get("domains", []),
        "external_key": data.get("external_key", data.get("id")),
    }


def signature_header(*, secret: str, body: bytes, timestamp_ms: int | None = None) -> str:
    """The ``WorkOS-Signature`` value for ``body``, signed now (or at ``timestamp_ms``)."""
    timestamp = str(timestamp_ms if timestamp_ms is not None else int(time.time() * 1000))
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"t={timestamp}, v1={digest}"
