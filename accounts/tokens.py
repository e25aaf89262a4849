"""Token generation. Raw tokens are shown once; the database keeps a keyed digest and a prefix."""

from __future__ import annotations

import secrets
import string

from gateway_project.crypto import keyed_digest

_ALPHABET = string.ascii_letters + string.digits
SECRET_LENGTH = 40  # ~238 bits
PAT_PREFIX = "gw_pat_"
VISIBLE_SECRET_CHARS = 6


def random_secret(length: int = SECRET_LENGTH) -> str:
    return "".join(secrets.choice(_ALPHABET) for _ in range(length))


def pat_generate() -> tuple[str, str, str]:
    """A new PAT: (raw token, visible prefix, digest)."""
    raw = PAT_PREFIX + random_secret()
    return raw, raw[: len(PAT_PREFIX) + VISIBLE_SECRET_CHARS], keyed_digest(raw)


def opaque_token_generate() -> tuple[str, str]:
    """A one-time link token (invitations): (raw, digest)."""
    raw = secrets.token_urlsafe(32)
    return raw, keyed_digest(raw)


VA_PREFIX = "gw_va_"


def va_token_generate(name: str) -> tuple[str, str, str]:
    """A new virtual account token `gw_va_<name>_<secret>`: (raw, visible prefix, digest)."""
    head = f"{VA_PREFIX}{name}_"
    raw = head + random_secret()
    return raw, raw[: len(head) + VISIBLE_SECRET_CHARS], keyed_digest(raw)
