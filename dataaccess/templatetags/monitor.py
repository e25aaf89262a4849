"""Template filters of the Monitor pages: durations, money, compact numbers, status badges."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django import template

from dataaccess.charts import format_value

register = template.Library()


@register.filter
def ms(value: Any) -> str:
    """`1234.5` -> `1.23 s`, `87.2` -> `87 ms`; None -> `—`."""
    return "—" if value is None else format_value(float(value), "ms")


@register.filter
def usd(value: Any) -> str:
    """Dollars with enough digits for fractions of a cent."""
    if value is None:
        return "—"
    amount = Decimal(str(value))
    if amount == 0:
        return "$0"
    return f"${amount:,.2f}" if amount >= 1 else f"${amount:.6f}".rstrip("0")


@register.filter
def compact(value: Any) -> str:
    """`12345` -> `12.3k`."""
    return "—" if value is None else format_value(float(value))


@register.filter
def percent(value: Any) -> str:
    return "—" if value is None else format_value(float(value), "%")


@register.filter
def status_badge(status: Any) -> str:
    """The badge colour class of an HTTP status or an MCP call status."""
    if isinstance(status, str) and not status.isdigit():
        return {"ok": "badge-green", "denied": "badge-amber"}.get(status, "badge-red")
    code = int(status)
    if code < 400:
        return "badge-green"
    return "badge-amber" if code < 500 else "badge-red"


@register.filter
def short_id(value: Any) -> str:
    return str(value)[:8]


@register.filter
def get_item(mapping: Any, key: str) -> Any:
    """`errors|get_item:"start"` for dictionaries with names a template cannot spell."""
    return mapping.get(key) if hasattr(mapping, "get") else None
