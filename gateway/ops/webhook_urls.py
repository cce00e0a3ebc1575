"""Where webhooks may be sent: http(s) URLs, and for organization keys no loopback, private or link-local address.

An organization key is a tenant's credential; letting it point the gateway at ``127.0.0.1`` or ``10.0.0.5`` would
let a tenant probe the operator's network through the delivery worker (server-side request forgery). Admin keys
(and every key with ``DSYNC_WEBHOOK_ALLOW_PRIVATE=1``) may: a self-hosted gateway often calls its own application
on a private network. The same test runs again on the resolved addresses before each delivery
(``gateway.webhooks.delivery``), so a public name that resolves to a private address is refused as well.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from gateway.ops.inputs import InvalidInput

MAX_URL_LENGTH = 2048


def is_public_address(address: str) -> bool:
    """Whether an IP address is a public, unicast one (not loopback, private, link-local, reserved …)."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return not (
        ip.is_private
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
        or not ip.is_global
    )


def check_webhook_url(url: str, *, allow_private: bool) -> str:
    """The URL cleaned of surrounding blanks, or ``InvalidInput`` saying why it cannot receive webhooks."""
    cleaned = url.strip()
    if not cleaned or len(cleaned) > MAX_URL_LENGTH:
        raise InvalidInput(f"webhook URL must be 1 to {MAX_URL_LENGTH} characters")
    try:
        parts = urlsplit(cleaned)
        host = parts.hostname
        parts.port  # noqa: B018 - raises ValueError on a port out of range
    except ValueError:
        raise InvalidInput(f"invalid webhook URL {cleaned!r}") from None
    if parts.scheme not in ("http", "https") or not host:
        raise InvalidInput("webhook URL must be an absolute http:// or https:// URL")
    if parts.username is not None or parts.password is not None:
        raise InvalidInput("webhook URL must not carry credentials")
    if not allow_private and _names_private_host(host):
        raise InvalidInput(
            "webhook URL targets a loopback, private or link-local address; only admin keys may "
            "(or set DSYNC_WEBHOOK_ALLOW_PRIVATE=1)"
        )
    return cleaned


def _names_private_host(host: str) -> bool:
    lowered = host.lower().rstrip(".")
    if lowered == "localhost" or lowered.endswith(".localhost"):
        return True
    try:
        ipaddress.ip_address(lowered.split("%", 1)[0])
    except ValueError:
        return False  # a name: its addresses are checked when delivering
    return not is_public_address(lowered)
