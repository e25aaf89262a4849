"""Key material for embedded mode: generated once into the var directory, mode 0600."""

from __future__ import annotations

import base64
import os
import secrets
from pathlib import Path


def _read_or_create(path: Path, make: str) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    # O_EXCL: two processes starting together agree on one key.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    with os.fdopen(fd, "w") as handle:
        handle.write(make)
    return make


def secret_key_from_file(path: Path) -> str:
    """Django's SECRET_KEY for embedded mode."""
    return _read_or_create(path, secrets.token_urlsafe(50))


def encryption_key_from_file(path: Path) -> str:
    """A Fernet key (url-safe base64 of 32 bytes) for secrets stored at rest."""
    return _read_or_create(path, base64.urlsafe_b64encode(secrets.token_bytes(32)).decode())
