"""Domain errors raised by services and selectors; every interface maps them the same way."""

from __future__ import annotations

from collections.abc import Mapping, Sequence


class GatewayError(Exception):
    """Base class: `message` is safe to show to the caller."""

    status = 400

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ValidationFailed(GatewayError):
    """Bad input: `fields` maps a field path to its messages ("" for the whole object)."""

    status = 400

    def __init__(self, message: str, fields: Mapping[str, Sequence[str]] | None = None) -> None:
        super().__init__(message)
        self.fields: dict[str, list[str]] = {k: list(v) for k, v in (fields or {}).items()}

    @classmethod
    def field(cls, name: str, message: str) -> ValidationFailed:
        """One field at fault."""
        return cls(f"{name}: {message}", {name: [message]})


class ObjectNotFound(GatewayError):
    """Missing or hidden from this principal: the two are indistinguishable on purpose."""

    status = 404


class Conflict(GatewayError):
    """The change collides with existing state (a duplicate name, the last admin)."""

    status = 409
