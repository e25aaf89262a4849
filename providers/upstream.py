"""Rules for hosts the gateway calls out to (SSRF).

A provider's base URL is set by its manager, never by callers: GATEWAY_UPSTREAM_ALLOWLIST
(empty allows any) limits where it may point. Other outbound URLs that less trusted people
configure (notification webhooks) may not reach loopback, link-local, private or metadata
addresses unless a pattern of theirs allows the host or address (`non_public_reason`).
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Sequence
from fnmatch import fnmatch
from urllib.parse import urlsplit

from django.conf import settings

from gateway_project.errors import ValidationFailed

# Names that reach the machine itself or a cloud metadata service whatever DNS says.
INTERNAL_NAMES = ("localhost", "*.localhost", "metadata.google.internal", "metadata.goog")
# NAT64 (RFC 6052) embeds an IPv4 address in its last 32 bits.
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


def host_matches(host: str, patterns: Sequence[str]) -> bool:
    """True when an fnmatch pattern matches `host` (case-insensitive)."""
    return any(fnmatch(host.lower(), p.lower()) for p in patterns)


def allowed_host(host: str) -> bool:
    """True when GATEWAY_UPSTREAM_ALLOWLIST is empty or a pattern matches `host`."""
    patterns: list[str] = settings.GATEWAY_UPSTREAM_ALLOWLIST
    return not patterns or host_matches(host, patterns)


def _non_public(address: str) -> bool:
    """Loopback, private, link-local (metadata), shared, reserved or multicast."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = ip.ipv4_mapped or ip.sixtofour or (ip.teredo or (None, None))[1]
        if embedded is None and ip in _NAT64:
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if embedded is not None and _non_public(str(embedded)):
            return True
    return not ip.is_global or ip.is_multicast


def _addresses(host: str) -> list[str]:
    """Every address `host` resolves to (also IPv4 literals in any spelling: 0x7f000001, 127.1)."""
    infos = socket.getaddrinfo(host.strip("[]"), None, proto=socket.IPPROTO_TCP)
    return sorted({str(info[4][0]) for info in infos})


class HostRefused(Exception):
    """The gateway must not call this host; `unresolved` when it only does not resolve (yet)."""

    def __init__(self, reason: str, *, unresolved: bool = False) -> None:
        super().__init__(reason)
        self.unresolved = unresolved


def vetted_addresses(host: str, patterns: Sequence[str]) -> list[str]:
    """The addresses of `host` the gateway may connect to, from one checked resolution.

    A host, or each of its addresses, is allowed when it is public or a pattern matches it.
    Connect to these addresses, not to the name: DNS may answer the name differently a moment
    later (rebinding). An empty list: a pattern matches the host itself, connect by name.
    Raises HostRefused.
    """
    host = host.lower().rstrip(".")
    if not host:
        raise HostRefused("has no host")
    if host_matches(host, patterns):
        return []
    if host_matches(host, INTERNAL_NAMES):
        raise HostRefused(f"host '{host}' is internal")
    try:
        addresses = _addresses(host)
    except (OSError, UnicodeError):
        raise HostRefused(f"host '{host}' does not resolve", unresolved=True) from None
    for address in addresses:
        if _non_public(address) and not host_matches(address, patterns):
            raise HostRefused(f"host '{host}' resolves to the non-public address {address}")
    return addresses


def non_public_reason(host: str, patterns: Sequence[str], *, strict: bool) -> str:
    """Why the gateway must not call `host`, or "" when it may (see `vetted_addresses`).

    `strict=False` (at save time) lets a name that does not resolve yet pass: it is checked
    again, strictly, before every call, because DNS can change in between.
    """
    try:
        vetted_addresses(host, patterns)
    except HostRefused as refused:
        return "" if refused.unresolved and not strict else str(refused)
    return ""


def base_url_validate(url: str, *, field: str = "base_url") -> str:
    """An http(s) URL without credentials, query or fragment, on an allowed host."""
    value = (url or "").strip().rstrip("/")
    if not value:
        return ""
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValidationFailed.field(field, "must be an http:// or https:// URL")
    if parts.username or parts.password or parts.query or parts.fragment:
        raise ValidationFailed.field(field, "must not carry credentials, a query or a fragment")
    if not allowed_host(parts.hostname):
        raise ValidationFailed.field(
            field, f"host '{parts.hostname}' is not in GATEWAY_UPSTREAM_ALLOWLIST"
        )
    return value
