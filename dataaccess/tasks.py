"""Observability jobs: export traces over OTLP/HTTP, and delete raw logs past retention.

OTLP export (`otlp_export_task`, every 15 s from beat; off while `GATEWAY_OTLP_ENDPOINT` is
empty). Each source (model requests, MCP tool calls) keeps a watermark, the `(started_at, id)`
of the last row exported, in a `JobState` row. A run takes batches of rows after the watermark,
builds their spans (`dataaccess.traces`), POSTs them as OTLP/HTTP JSON to
`{endpoint}/v1/traces`, and moves the watermark only after a 2xx answer, so a failed POST is
retried by the next run (at least once; span ids are stable, so collectors de-duplicate).
Rows are written when a request ends but ordered by when it started, so a run only exports
rows that started at least `GATEWAY_OTLP_EXPORT_DELAY_SECONDS` ago (default: the request
deadline plus 30 s): by then every such request has finished and been written. Records
replayed from the log writer's spool after a database outage longer than that are not
exported. The first run starts at that cut-off: history from before export was enabled is
not sent. Request and response bodies are never exported.

Retention (`log_retention_task`, hourly): raw request logs and MCP tool-call rows older than
`GATEWAY_LOG_RETENTION_DAYS` (default 30; 0 keeps them forever) are deleted in batches. The
rollups are kept: charts and metrics still cover older periods, while the request list,
details, traces and CSV export only reach back as far as the raw rows.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any
from urllib.parse import unquote

import httpx
from celery import shared_task
from django.conf import settings
from django.db import models, transaction
from django.db.models import F, Q
from django.utils import timezone

from dataaccess.models import JobState
from dataaccess.traces import Span, mcp_trace, otlp_payload, request_trace
from proxy.models import McpToolCall, RequestLog

logger = logging.getLogger(__name__)

EXPORT_BATCH = 500
MAX_BATCHES_PER_RUN = 20
RETENTION_BATCH = 5000
HTTP_TIMEOUT_SECONDS = 10.0


class ExportFailed(Exception):
    """The collector refused or could not be reached; the watermark stays put."""


def _sources() -> dict[str, tuple[type[models.Model], Callable[[Any], list[Span]]]]:
    return {
        "otlp-requests": (RequestLog, request_trace),
        "otlp-mcp": (McpToolCall, mcp_trace),
    }


def otlp_headers(raw: str) -> dict[str, str]:
    """`key=value,key2=value2` (the OTEL_EXPORTER_OTLP_HEADERS format, values URL-encoded)."""
    headers = {}
    for item in raw.split(","):
        key, sep, value = item.partition("=")
        if sep and key.strip():
            headers[key.strip()] = unquote(value.strip())
    return headers


def _post(endpoint: str, payload: dict[str, Any]) -> None:
    url = endpoint.rstrip("/") + "/v1/traces"
    headers = otlp_headers(settings.GATEWAY_OTLP_HEADERS)
    try:
        response = httpx.post(url, json=payload, headers=headers, timeout=HTTP_TIMEOUT_SECONDS)
    except httpx.HTTPError as exc:
        raise ExportFailed(f"{type(exc).__name__} posting to the collector") from exc
    if not 200 <= response.status_code < 300:
        raise ExportFailed(f"the collector answered HTTP {response.status_code}")


def _after_watermark(qs: models.QuerySet[Any], state: JobState) -> models.QuerySet[Any]:
    if state.watermark_at is None:
        return qs
    at, ident = state.watermark_at, state.watermark_id
    if not ident:  # the first run's cut-off: nothing at that instant was exported yet
        return qs.filter(started_at__gte=at)
    return qs.filter(started_at__gte=at).filter(
        Q(started_at__gt=at) | Q(started_at=at, id__gt=ident)
    )


def _export_batch(name: str, endpoint: str, cutoff: Any) -> int | None:
    """Export one batch; the number of rows, or None when another worker holds the job."""
    model, builder = _sources()[name]
    with transaction.atomic():
        state = JobState.objects.select_for_update(skip_locked=True).filter(name=name).first()
        if state is None:
            return None
        if state.watermark_at is None:  # the first run starts now: no history is sent
            state.watermark_at = cutoff
            state.save(update_fields=["watermark_at"])
            return 0
        qs = model._default_manager.filter(started_at__lte=cutoff).order_by("started_at", "id")
        if model is RequestLog:
            qs = qs.defer("request_body", "response_body")
        rows: Sequence[Any] = list(_after_watermark(qs, state)[:EXPORT_BATCH])
        if rows:
            spans = [span for row in rows for span in builder(row)]
            _post(endpoint, otlp_payload(spans, service_name=settings.GATEWAY_OTLP_SERVICE_NAME))
            state.watermark_at = rows[-1].started_at
            state.watermark_id = str(rows[-1].id)
            state.total += len(spans)
        state.last_count = len(rows)
        state.last_run_at = state.last_success_at = timezone.now()
        state.last_error = ""
        state.save()
        return len(rows)


def _export(name: str, endpoint: str) -> int:
    JobState.objects.get_or_create(name=name)
    cutoff = timezone.now() - timedelta(seconds=settings.GATEWAY_OTLP_EXPORT_DELAY_SECONDS)
    done = 0
    for _ in range(MAX_BATCHES_PER_RUN):
        try:
            count = _export_batch(name, endpoint, cutoff)
        except ExportFailed as exc:
            logger.warning("otlp export %s: %s; retrying on the next run", name, exc)
            JobState.objects.filter(name=name).update(
                last_run_at=timezone.now(), last_error=str(exc)[:500]
            )
            break
        if count is None:
            break
        done += count
        if count < EXPORT_BATCH:
            break
    return done


@shared_task
def otlp_export_task() -> int:
    """Send spans of requests and MCP calls past the watermarks; returns rows exported."""
    endpoint = settings.GATEWAY_OTLP_ENDPOINT
    if not endpoint:
        return 0
    return sum(_export(name, endpoint) for name in _sources())


def _delete_older(model: type[models.Model], cutoff: Any) -> int:
    deleted = 0
    manager = model._default_manager
    while True:
        ids = list(
            manager.filter(started_at__lt=cutoff)
            .order_by()
            .values_list("pk", flat=True)[:RETENTION_BATCH]
        )
        if not ids:
            return deleted
        count, _ = manager.filter(pk__in=ids).delete()
        deleted += count


@shared_task
def log_retention_task() -> int:
    """Delete raw logs older than GATEWAY_LOG_RETENTION_DAYS (rollups stay); rows deleted."""
    days = int(settings.GATEWAY_LOG_RETENTION_DAYS)
    if days <= 0:
        return 0
    cutoff = timezone.now() - timedelta(days=days)
    deleted = _delete_older(RequestLog, cutoff) + _delete_older(McpToolCall, cutoff)
    JobState.objects.get_or_create(name="retention")
    now = timezone.now()
    JobState.objects.filter(name="retention").update(
        watermark_at=cutoff,
        last_count=deleted,
        total=F("total") + deleted,
        last_run_at=now,
        last_success_at=now,
        last_error="",
    )
    if deleted:
        logger.info("retention: deleted %d log row(s) older than %s days", deleted, days)
    return deleted


@shared_task
def rollup_compact_task() -> int:
    """Build 6-hour rollups of complete periods (and re-build late-updated ones)."""
    from dataaccess.compaction import compact

    return compact()
