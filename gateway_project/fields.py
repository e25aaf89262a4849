"""EncryptedTextField: a text column whose value is encrypted at rest with the gateway's key."""

from __future__ import annotations

import json
from typing import Any

from django.db import models

from gateway_project.crypto import decrypt, encrypt


class EncryptedTextField(models.TextField):  # type: ignore[type-arg]
    """Stores Fernet ciphertext; Python code sees the plain value. Never shown after saving."""

    description = "Text encrypted at rest"

    def from_db_value(self, value: str | None, expression: Any, connection: Any) -> str | None:
        if value is None or value == "":
            return value
        return decrypt(value)

    def get_prep_value(self, value: Any) -> Any:
        value = super().get_prep_value(value)
        if value is None or value == "":
            return value
        return encrypt(str(value))


class EncryptedJSONField(EncryptedTextField):
    """A JSON value (dict, list, ...) stored as Fernet ciphertext of its JSON text.

    For configuration that mixes plain settings with secrets (a webhook's URL and its signing
    secret): the whole value is encrypted, so no part of it can leak from a database dump.
    It cannot be queried by key, only for null.
    """

    description = "JSON encrypted at rest"
    # django-stubs: the Python type is any JSON value, not str.
    _pyi_private_set_type: Any
    _pyi_private_get_type: Any

    def from_db_value(self, value: str | None, expression: Any, connection: Any) -> Any:
        text = super().from_db_value(value, expression, connection)
        return None if text is None or text == "" else json.loads(text)

    def to_python(self, value: Any) -> Any:
        return json.loads(value) if isinstance(value, str) and value else value

    def get_prep_value(self, value: Any) -> Any:
        if value is None:
            return None
        return encrypt(json.dumps(value, separators=(",", ":"), sort_keys=True))
