"""Records of what went through the proxy: model requests and MCP tool calls."""

from __future__ import annotations

import uuid
from typing import ClassVar

from django.db import models
from django.utils import timezone


class CallerFields(models.Model):
    """Who called: subject type, id and name, and their teams denormalised at write time.

    `team_ids` is `|1|7|` so "any of these teams" is a cheap indexed-prefix-free LIKE on both
    PostgreSQL and SQLite; `teams` keeps the names for display.
    """

    caller_type = models.CharField(max_length=32)  # user | virtualaccount
    caller_id = models.BigIntegerField()
    caller_name = models.CharField(max_length=300)  # email or virtual account name
    team_ids = models.CharField(max_length=2000, default="|")
    teams = models.JSONField(default=list)
    metadata = models.JSONField(default=dict)

    class Meta:
        abstract = True


class RequestLog(CallerFields):
    """One model request through the proxy."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4)
    started_at = models.DateTimeField(default=timezone.now)
    endpoint = models.CharField(max_length=64)  # chat/completions, messages, embeddings...
    requested_model = models.CharField(max_length=200)
    provider_account = models.CharField(max_length=64, blank=True)
    provider_model = models.CharField(max_length=255, blank=True)
    status = models.PositiveSmallIntegerField()
    error_type = models.CharField(max_length=64, blank=True)
    streaming = models.BooleanField(default=False)
    input_tokens = models.PositiveIntegerField(default=0)
    output_tokens = models.PositiveIntegerField(default=0)
    latency_ms = models.FloatField(default=0)
    ttft_ms = models.FloatField(null=True, blank=True)
    cost_usd = models.DecimalField(max_digits=14, decimal_places=8, default=0)
    request_body = models.TextField(null=True, blank=True)  # noqa: DJ001 - None: not logged
    response_body = models.TextField(null=True, blank=True)  # noqa: DJ001 - None: not logged

    class Meta:
        ordering: ClassVar = ["-started_at"]
        indexes: ClassVar = [
            models.Index(fields=["-started_at"], name="proxy_log_started_idx"),
            models.Index(
                fields=["caller_type", "caller_id", "-started_at"], name="proxy_log_caller_idx"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.endpoint} {self.requested_model} {self.status}"


class McpToolCall(CallerFields):
    """One MCP tool call through the gateway."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4)
    started_at = models.DateTimeField(default=timezone.now)
    server = models.CharField(max_length=73)
    tool = models.CharField(max_length=200)
    status = models.CharField(max_length=16)  # ok | error | denied
    error = models.CharField(max_length=300, blank=True)
    latency_ms = models.FloatField(default=0)

    class Meta:
        ordering: ClassVar = ["-started_at"]
        indexes: ClassVar = [
            models.Index(fields=["-started_at"], name="proxy_mcp_started_idx"),
            models.Index(fields=["server", "-started_at"], name="proxy_mcp_server_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.server}.{self.tool} {self.status}"
