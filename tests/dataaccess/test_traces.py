"""Traces from log rows, OTLP/HTTP export to a local receiver, and raw-log retention."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from django.utils import timezone

from dataaccess import tasks, traces
from dataaccess.models import JobState, Rollup
from proxy.logwriter import _insert
from proxy.models import McpToolCall, RequestLog
from tests.dataaccess.conftest import World, log_record, mcp_record

pytestmark = pytest.mark.django_db


class Receiver:
    """An OTLP/HTTP collector on 127.0.0.1 that records what it is sent."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.status = 200
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers["Content-Length"])
                receiver.requests.append(
                    {
                        "path": self.path,
                        "headers": dict(self.headers),
                        "body": json.loads(self.rfile.read(length)),
                    }
                )
                self.send_response(receiver.status)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def spans(self) -> list[dict[str, Any]]:
        return [
            span
            for request in self.requests
            for resource in request["body"]["resourceSpans"]
            for scope in resource["scopeSpans"]
            for span in scope["spans"]
        ]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver(settings) -> Iterator[Receiver]:
    server = Receiver()
    settings.GATEWAY_OTLP_ENDPOINT = server.url + "/"
    settings.GATEWAY_OTLP_HEADERS = "x-api-key=s3cr%3Dt,x-team=obs"
    settings.GATEWAY_OTLP_EXPORT_DELAY_SECONDS = 0
    yield server
    server.close()


def since(minutes: int) -> None:
    """Start the export watermarks `minutes` ago (the first run otherwise starts now)."""
    at = timezone.now() - timedelta(minutes=minutes)
    for name in ("otlp-requests", "otlp-mcp"):
        JobState.objects.update_or_create(name=name, defaults={"watermark_at": at})


# --- traces ---------------------------------------------------------------------------------


def test_streamed_request_trace(world):
    row = RequestLog.objects.get(input_tokens=10000)  # streamed: TTFT 30 ms of 40 ms
    spans = traces.request_trace(row)
    assert [(s.name, s.kind, s.duration_ms, s.depth) for s in spans] == [
        ("gateway chat/completions", "server", 40.0, 0),
        ("gateway.auth_routing", "internal", 0.0, 1),
        ("provider.call", "client", 30.0, 1),
        ("response.stream", "internal", 10.0, 1),
    ]
    root = spans[0]
    assert root.trace_id == row.pk.hex
    assert all(s.parent_id == root.span_id for s in spans[1:])
    assert root.attributes["gen_ai.usage.input_tokens"] == 10000
    assert root.attributes["gateway.metadata.app"] == "checkout"
    assert spans[2].events[0].name == "first_token"
    assert traces.request_trace(row)[2].span_id == spans[2].span_id  # stable ids


def test_failed_request_trace_marks_errors(world):
    row = RequestLog.objects.get(input_tokens=1000)  # 429 from the provider
    spans = traces.request_trace(row)
    assert [s.name for s in spans] == [
        "gateway chat/completions",
        "gateway.auth_routing",
        "provider.call",
    ]
    assert spans[0].error
    assert spans[2].error
    assert spans[0].attributes["error.type"] == "rate_limited"


def test_waterfall_positions(world):
    rows = traces.waterfall(traces.request_trace(RequestLog.objects.get(input_tokens=10000)))
    assert [(r.left, r.width) for r in rows] == [(0, 100), (0, 0.5), (0, 75), (75, 25)]


# --- OTLP export ----------------------------------------------------------------------------


def test_export_sends_new_spans_once_with_a_watermark(world, receiver):
    since(60)
    assert tasks.otlp_export_task() == 8  # 6 requests and 2 MCP calls
    assert {r["path"] for r in receiver.requests} == {"/v1/traces"}
    assert receiver.requests[0]["headers"]["x-api-key"] == "s3cr=t"
    assert receiver.requests[0]["headers"]["Content-Type"] == "application/json"
    body = receiver.requests[0]["body"]
    resource = body["resourceSpans"][0]["resource"]["attributes"]
    assert resource == [{"key": "service.name", "value": {"stringValue": "gateway"}}]
    spans = receiver.spans()
    assert len(spans) == 3 + 4 + 3 + 3 + 3 + 3 + 2 + 2
    assert {s["traceId"] for s in spans} == {r.pk.hex for r in RequestLog.objects.all()} | {
        c.pk.hex for c in McpToolCall.objects.all()
    }
    root = next(
        s for s in spans if s["name"] == "gateway chat/completions" and "parentSpanId" not in s
    )
    assert int(root["endTimeUnixNano"]) > int(root["startTimeUnixNano"])
    assert root["kind"] == 2
    assert "request_body" not in json.dumps(body)  # bodies are never exported

    receiver.requests.clear()
    assert tasks.otlp_export_task() == 0
    assert receiver.requests == []
    _insert([("request", log_record(world.alice, [world.pay], tokens=5))])
    assert tasks.otlp_export_task() == 1
    assert len(receiver.spans()) == 3
    state = JobState.objects.get(name="otlp-requests")
    assert state.total == 3 + 4 + 3 + 3 + 3 + 3 + 3
    assert state.last_error == ""


def test_a_refusing_collector_keeps_the_watermark(world, receiver):
    since(60)
    receiver.status = 503
    assert tasks.otlp_export_task() == 0
    state = JobState.objects.get(name="otlp-requests")
    assert state.last_error == "the collector answered HTTP 503"
    assert state.watermark_id == ""
    receiver.status = 200
    assert tasks.otlp_export_task() == 8  # the same rows, retried


def test_rows_younger_than_the_delay_wait(world, receiver, settings):
    since(60)
    settings.GATEWAY_OTLP_EXPORT_DELAY_SECONDS = 3600
    assert tasks.otlp_export_task() == 0
    settings.GATEWAY_OTLP_EXPORT_DELAY_SECONDS = 0
    assert tasks.otlp_export_task() == 8


def test_the_first_run_starts_now(world, receiver):
    assert tasks.otlp_export_task() == 0  # sets the watermark: history is not sent
    assert receiver.requests == []
    call = mcp_record(world.bob, [world.ml], server="jira", tool="x", status="ok", latency=1)
    call["started_at"] = timezone.now()
    _insert([("mcp", call)])
    assert tasks.otlp_export_task() == 1
    assert [s["name"] for s in receiver.spans()] == ["mcp tools/call jira.x", "mcp.upstream"]


def test_export_is_off_without_an_endpoint(world, settings):
    settings.GATEWAY_OTLP_ENDPOINT = ""
    assert tasks.otlp_export_task() == 0
    assert not JobState.objects.filter(name__startswith="otlp").exists()


def test_unreachable_collector_is_recorded(world, settings):
    settings.GATEWAY_OTLP_ENDPOINT = "http://127.0.0.1:9"
    settings.GATEWAY_OTLP_EXPORT_DELAY_SECONDS = 0
    since(60)
    assert tasks.otlp_export_task() == 0
    assert JobState.objects.get(name="otlp-requests").last_error.endswith(
        "posting to the collector"
    )


# --- retention ------------------------------------------------------------------------------


def test_retention_deletes_old_raw_rows_and_keeps_rollups(world: World, settings):
    old = timezone.now() - timedelta(days=31)
    _insert(
        [
            ("request", log_record(world.alice, [world.pay], tokens=7, at=old)),
            ("request", log_record(world.bob, [world.ml], tokens=8, at=old + timedelta(days=2))),
        ]
    )
    hour_rows = Rollup.objects.filter(granularity="hour").count()
    assert tasks.log_retention_task() == 1
    assert sorted(RequestLog.objects.values_list("input_tokens", flat=True)) == [
        1,
        8,
        10,
        100,
        1000,
        10000,
        100000,
    ]
    assert Rollup.objects.filter(granularity="hour").count() == hour_rows
    assert Rollup.objects.filter(input_tokens=7).count() == 2  # its minute and hour rows stay
    state = JobState.objects.get(name="retention")
    assert (state.last_count, state.total) == (1, 1)
    settings.GATEWAY_LOG_RETENTION_DAYS = 1
    assert tasks.log_retention_task() == 1
    settings.GATEWAY_LOG_RETENTION_DAYS = 0
    assert tasks.log_retention_task() == 0  # 0 keeps everything
    assert RequestLog.objects.count() == 6
