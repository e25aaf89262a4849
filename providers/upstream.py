"""Rules for upstream hosts: a provider's base URL is set by its manager, never by callers."""

from __future__ import annotations

from fnmatch import fnmatch
from urllib.parse import urlsplit

from django.conf import settings

from gateway_project.errors import ValidationFailed


def allowed_host(host: str) -> bool:
    """True when GATEWAY_UPSTREAM_ALLOWLIST is empty or a pattern matches `host`."""
    patterns: list[str] = settings.GATEWAY_UPSTREAM_ALLOWLIST
    return not patterns or any(fnmatch(host.lower(), p.lower()) for p in patterns)


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
