"""Traces built from log rows, for the console's waterfall and for OTLP export.

A model request is one trace (its id is the log row's UUID) with these spans:

- `gateway <endpoint>` (server): the whole request, `started_at` to `started_at + latency`;
- `gateway.auth_routing` (internal): authentication, authorisation and routing. The log row
  does not time this step separately, so it is recorded as an instant at the start (attribute
  `gateway.timing = "not recorded"`) rather than an invented duration;
- `provider.call` (client): the upstream call up to the first token (`ttft_ms`), or to the
  end when there is no first token (errors); its `first_token` event marks TTFT;
- `response.stream` (internal): first token to last byte, for streamed responses.

An MCP tool call is its own trace: `mcp tools/call <server>.<tool>` (server) with a
`mcp.upstream` (client) child over the same interval.

Span ids are derived from the trace id and the span's name, so a trace exported twice has the
same ids and collectors de-duplicate it. Attribute names follow the OpenTelemetry GenAI
semantic conventions where one exists (`gen_ai.*`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from proxy.models import McpToolCall, RequestLog

SpanKind = Literal["server", "client", "internal"]
OTLP_KIND = {"internal": 1, "server": 2, "client": 3}
OTLP_STATUS_OK, OTLP_STATUS_ERROR = 1, 2
Attribute = str | int | float | bool


@dataclass(frozen=True)
class SpanEvent:
    name: str
    at: datetime
    attributes: dict[str, Attribute] = field(default_factory=dict)


@dataclass(frozen=True)
class Span:
    """One span; offsets are in milliseconds from the start of its trace."""

    trace_id: str  # 32 hex digits
    span_id: str  # 16 hex digits
    parent_id: str | None
    name: str
    kind: SpanKind
    start: datetime
    end: datetime
    error: bool
    attributes: dict[str, Attribute]
    events: list[SpanEvent] = field(default_factory=list)
    depth: int = 0

    @property
    def duration_ms(self) -> float:
        return (self.end - self.start).total_seconds() * 1000


def _span_id(trace_id: str, name: str) -> str:
    return hashlib.sha256(f"{trace_id}/{name}".encode()).hexdigest()[:16]


def _caller(row: RequestLog | McpToolCall) -> dict[str, Attribute]:
    return {
        "gateway.caller.type": row.caller_type,
        "gateway.caller.name": row.caller_name,
        "gateway.caller.teams": ",".join(str(t) for t in row.teams or []),
    }


def request_trace(log: RequestLog) -> list[Span]:
    """The spans of one model request (see the module docstring)."""
    trace = log.id.hex
    start = log.started_at
    end = start + timedelta(milliseconds=float(log.latency_ms or 0))
    error = log.status >= 400
    root_id = _span_id(trace, "root")
    root_attrs: dict[str, Attribute] = {
        "http.request.method": "POST",
        "url.path": f"/v1/{log.endpoint}",
        "http.response.status_code": int(log.status),
        "gen_ai.request.model": log.requested_model,
        "gen_ai.usage.input_tokens": int(log.input_tokens),
        "gen_ai.usage.output_tokens": int(log.output_tokens),
        "gateway.cost_usd": float(log.cost_usd),
        "gateway.streaming": bool(log.streaming),
        **_caller(log),
    }
    if log.error_type:
        root_attrs["error.type"] = log.error_type
    for key, value in sorted((log.metadata or {}).items()):
        root_attrs[f"gateway.metadata.{key}"] = str(value)
    spans = [
        Span(
            trace, root_id, None, f"gateway {log.endpoint}", "server", start, end, error, root_attrs
        ),
        Span(
            trace,
            _span_id(trace, "auth_routing"),
            root_id,
            "gateway.auth_routing",
            "internal",
            start,
            start,
            error and not log.provider_account,
            {"gateway.timing": "not recorded", "gateway.provider_account": log.provider_account},
            depth=1,
        ),
    ]
    if not log.provider_account:  # refused before routing: no provider was called
        return spans
    ttft = None if log.ttft_ms is None else start + timedelta(milliseconds=float(log.ttft_ms))
    call_end = min(ttft, end) if ttft is not None else end
    provider_attrs: dict[str, Attribute] = {
        "gen_ai.system": log.provider_account,
        "gen_ai.request.model": log.provider_model or log.requested_model,
        "gateway.provider_account": log.provider_account,
    }
    events = []
    if ttft is not None:
        provider_attrs["gateway.ttft_ms"] = float(log.ttft_ms or 0)
        events.append(SpanEvent("first_token", ttft))
    spans.append(
        Span(
            trace,
            _span_id(trace, "provider"),
            root_id,
            "provider.call",
            "client",
            start,
            call_end,
            error,
            provider_attrs,
            events,
            depth=1,
        )
    )
    if log.streaming and ttft is not None and ttft < end:
        spans.append(
            Span(
                trace,
                _span_id(trace, "stream"),
                root_id,
                "response.stream",
                "internal",
                ttft,
                end,
                error,
                {"gen_ai.usage.output_tokens": int(log.output_tokens)},
                depth=1,
            )
        )
    return spans


def mcp_trace(call: McpToolCall) -> list[Span]:
    """The spans of one MCP tool call."""
    trace = call.id.hex
    start = call.started_at
    end = start + timedelta(milliseconds=float(call.latency_ms or 0))
    error = call.status != "ok"
    root_id = _span_id(trace, "root")
    attrs: dict[str, Attribute] = {
        "mcp.method.name": "tools/call",
        "mcp.server": call.server,
        "gen_ai.tool.name": call.tool,
        "gateway.status": call.status,
        **_caller(call),
    }
    if call.error:
        attrs["error.type"] = call.error
    return [
        Span(
            trace,
            root_id,
            None,
            f"mcp tools/call {call.server}.{call.tool}",
            "server",
            start,
            end,
            error,
            attrs,
        ),
        Span(
            trace,
            _span_id(trace, "upstream"),
            root_id,
            "mcp.upstream",
            "client",
            start,
            end,
            error,
            {"mcp.server": call.server, "gen_ai.tool.name": call.tool},
            depth=1,
        ),
    ]


# --- OTLP/HTTP JSON (opentelemetry-proto, JSON encoding: ids in hex, uint64 as strings) ----------


def _nanos(moment: datetime) -> str:
    delta = moment - datetime(1970, 1, 1, tzinfo=moment.tzinfo)
    return str(
        delta.days * 86_400_000_000_000 + delta.seconds * 1_000_000_000 + delta.microseconds * 1000
    )


def _value(value: Attribute) -> dict[str, Any]:
    if isinstance(value, bool):
        return {"boolValue": value}
    if isinstance(value, int):
        return {"intValue": str(value)}
    if isinstance(value, float):
        return {"doubleValue": value}
    return {"stringValue": str(value)}


def _attributes(values: dict[str, Attribute]) -> list[dict[str, Any]]:
    return [{"key": k, "value": _value(v)} for k, v in values.items()]


def otlp_span(span: Span) -> dict[str, Any]:
    """One span in the OTLP JSON encoding."""
    out: dict[str, Any] = {
        "traceId": span.trace_id,
        "spanId": span.span_id,
        "name": span.name,
        "kind": OTLP_KIND[span.kind],
        "startTimeUnixNano": _nanos(span.start),
        "endTimeUnixNano": _nanos(span.end),
        "attributes": _attributes(span.attributes),
        "status": {"code": OTLP_STATUS_ERROR if span.error else OTLP_STATUS_OK},
    }
    if span.parent_id:
        out["parentSpanId"] = span.parent_id
    if span.events:
        out["events"] = [
            {"timeUnixNano": _nanos(e.at), "name": e.name, "attributes": _attributes(e.attributes)}
            for e in span.events
        ]
    return out


def otlp_payload(spans: Iterable[Span], *, service_name: str) -> dict[str, Any]:
    """An `ExportTraceServiceRequest` body for POST {endpoint}/v1/traces."""
    return {
        "resourceSpans": [
            {
                "resource": {"attributes": _attributes({"service.name": service_name})},
                "scopeSpans": [
                    {
                        "scope": {"name": "gateway"},
                        "spans": [otlp_span(s) for s in spans],
                    }
                ],
            }
        ]
    }


@dataclass(frozen=True)
class WaterfallRow:
    """A span laid out for the console: offset and width in percent of the trace."""

    span: Span
    offset_ms: float
    left: float
    width: float


def waterfall(spans: list[Span]) -> list[WaterfallRow]:
    """Spans with their position on a common time axis (at least a sliver when instant)."""
    if not spans:
        return []
    start = min(s.start for s in spans)
    total = max((max(s.end for s in spans) - start).total_seconds() * 1000, 0.001)
    rows = []
    for span in spans:
        offset = (span.start - start).total_seconds() * 1000
        left = min(offset / total * 100, 99.5)
        width = max(span.duration_ms / total * 100, 0.5)
        rows.append(WaterfallRow(span, offset, round(left, 3), round(min(width, 100 - left), 3)))
    return rows
