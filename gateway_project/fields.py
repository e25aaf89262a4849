"""EncryptedTextField: a text column whose value is encrypted at rest with the gateway's key."""

from __future__ import annotations

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
