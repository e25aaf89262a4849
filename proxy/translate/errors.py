"""The one error the translators raise."""

from __future__ import annotations


class TranslationError(ValueError):
    """A request that is malformed or cannot be expressed in the target dialect.

    `field` is the request path at fault (e.g. "messages[2].content[0].type"), so the proxy can
    answer HTTP 400 naming it.
    """

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message
