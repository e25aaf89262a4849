"""Encryption of secrets at rest (Fernet, keys from GATEWAY_ENCRYPTION_KEY) and keyed hashes."""

from __future__ import annotations

import hashlib
import hmac
from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings


class DecryptionError(Exception):
    """A stored secret could not be decrypted with any configured key."""


@lru_cache(maxsize=1)
def _fernet() -> MultiFernet:
    return MultiFernet([Fernet(key.encode()) for key in settings.GATEWAY_ENCRYPTION_KEYS])


def encrypt(plain: str) -> str:
    """Encrypt with the first key; the result is ASCII and safe to store in a text column."""
    return _fernet().encrypt(plain.encode()).decode()


def decrypt(cipher: str) -> str:
    """Decrypt with any configured key (the first is current, the rest are for rotation)."""
    try:
        return _fernet().decrypt(cipher.encode()).decode()
    except InvalidToken as exc:
        raise DecryptionError("stored secret cannot be decrypted with the configured keys") from exc


@lru_cache(maxsize=1)
def _digest_key() -> bytes:
    # A key of its own, derived from SECRET_KEY, so digests are useless without the server.
    return hmac.new(settings.SECRET_KEY.encode(), b"gateway-token-digest", hashlib.sha256).digest()


def keyed_digest(raw: str) -> str:
    """HMAC-SHA256 of a token: what the database stores instead of the token."""
    return hmac.new(_digest_key(), raw.encode(), hashlib.sha256).hexdigest()
