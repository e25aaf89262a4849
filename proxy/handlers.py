"""Imports every proxy module that registers routes with `proxy.app.route`."""

from __future__ import annotations

from proxy import (
    llm,  # noqa: F401
    mcp,  # noqa: F401
)
