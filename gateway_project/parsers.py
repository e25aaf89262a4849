"""DRF parsers (DEFAULT_PARSER_CLASSES).

A module of its own: DRF imports gateway_project.api for its settings (pagination, exception
handler), and importing `rest_framework.parsers` from there made a circular import (seen when
the Celery worker started).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rest_framework import exceptions, parsers


class JSONParser(parsers.JSONParser):
    """DRF's JSON parser; JSON nested past the parser's recursion limit is a 400, not a 500."""

    def parse(
        self,
        stream: Any,
        media_type: str | None = None,
        parser_context: Mapping[str, Any] | None = None,
    ) -> Any:
        try:
            return super().parse(stream, media_type, parser_context)
        except RecursionError as exc:
            raise exceptions.ParseError("JSON parse error - nested too deeply") from exc
