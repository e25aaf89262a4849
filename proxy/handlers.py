"""Imports every proxy module that registers routes with `proxy.app.route`."""

from __future__ import annotations
