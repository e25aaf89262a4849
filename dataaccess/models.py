"""Data Access rules and the metric rollups the dashboards read."""

from __future__ import annotations

from typing import ClassVar

from django.db import models
from django.utils import timezone

# Latency histogram bucket upper bounds in ms (the last bucket is open-ended). Percentiles on
# dashboards are read from these counts, so they are additive across rows and rules.
LATENCY_BOUNDS_MS = (5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000)
HISTOGRAM_FIELDS = tuple(f"h{i}" for i in range(len(LATENCY_BOUNDS_MS) + 1))
TTFT_FIELDS = tuple(f"t{i}" for i in range(len(LATENCY_BOUNDS_MS) + 1))


class DataAccessConfig(models.Model):
    """The tenant's `gateway-data-access-config`: a name and an ordered list of rules."""

    name = models.CharField(max_length=64, unique=True)
    rules = models.JSONField(default=list)
    created_via = models.CharField(max_length=16, default="system")
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return self.name


class Rollup(models.Model):
    """Request counts and sums for one bucket (minute or hour) and one set of dimensions.

    The dimensions are exactly what Data Access rules filter on (caller, teams, metadata), so
    dashboards apply the same filters to rollups as to raw logs and never scan raw logs.
    """

    class Granularity(models.TextChoices):
        MINUTE = "minute", "Minute"
        HOUR = "hour", "Hour"
        SIX_HOURS = "6h", "6 hours"  # compacted from hour rows (dataaccess.compaction)

    granularity = models.CharField(max_length=8, choices=Granularity.choices)
    bucket = models.DateTimeField()
    kind = models.CharField(max_length=8, default="model")  # model | mcp
    provider_account = models.CharField(max_length=64, default="")
    model = models.CharField(max_length=200, default="")  # requested model, or MCP server.tool
    caller_type = models.CharField(max_length=32)
    caller_id = models.BigIntegerField()
    caller_name = models.CharField(max_length=300)
    team_ids = models.CharField(max_length=2000, default="|")
    teams = models.JSONField(default=list)
    metadata = models.JSONField(default=dict)
    metadata_key = models.CharField(max_length=64)  # digest of the canonical metadata JSON
    status_class = models.CharField(max_length=8)  # ok | 4xx | 5xx
    error_type = models.CharField(max_length=64, default="")
    requests = models.BigIntegerField(default=0)
    errors = models.BigIntegerField(default=0)
    input_tokens = models.BigIntegerField(default=0)
    output_tokens = models.BigIntegerField(default=0)
    cost_usd = models.FloatField(default=0)
    latency_ms_sum = models.FloatField(default=0)
    ttft_ms_sum = models.FloatField(default=0)
    ttft_count = models.BigIntegerField(default=0)
    h0 = models.BigIntegerField(default=0)
    h1 = models.BigIntegerField(default=0)
    h2 = models.BigIntegerField(default=0)
    h3 = models.BigIntegerField(default=0)
    h4 = models.BigIntegerField(default=0)
    h5 = models.BigIntegerField(default=0)
    h6 = models.BigIntegerField(default=0)
    h7 = models.BigIntegerField(default=0)
    h8 = models.BigIntegerField(default=0)
    h9 = models.BigIntegerField(default=0)
    h10 = models.BigIntegerField(default=0)
    h11 = models.BigIntegerField(default=0)
    h12 = models.BigIntegerField(default=0)
    t0 = models.BigIntegerField(default=0)
    t1 = models.BigIntegerField(default=0)
    t2 = models.BigIntegerField(default=0)
    t3 = models.BigIntegerField(default=0)
    t4 = models.BigIntegerField(default=0)
    t5 = models.BigIntegerField(default=0)
    t6 = models.BigIntegerField(default=0)
    t7 = models.BigIntegerField(default=0)
    t8 = models.BigIntegerField(default=0)
    t9 = models.BigIntegerField(default=0)
    t10 = models.BigIntegerField(default=0)
    t11 = models.BigIntegerField(default=0)
    t12 = models.BigIntegerField(default=0)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints: ClassVar = [
            models.UniqueConstraint(
                fields=[
                    "granularity",
                    "bucket",
                    "kind",
                    "provider_account",
                    "model",
                    "caller_type",
                    "caller_id",
                    "team_ids",
                    "metadata_key",
                    "status_class",
                    "error_type",
                ],
                name="dataaccess_rollup_key",
            ),
        ]
        indexes: ClassVar = [
            models.Index(fields=["granularity", "kind", "bucket"], name="dataaccess_rollup_time"),
        ]

    def __str__(self) -> str:
        return f"{self.granularity} {self.bucket} {self.model} {self.caller_name}"


class JobState(models.Model):
    """A recurring observability job (OTLP export, retention): its watermark and last run.

    The console's Data Access page shows these rows, so an operator sees whether exports keep
    up and when raw logs were last pruned.
    """

    name = models.CharField(max_length=32, unique=True)  # otlp-requests | otlp-mcp | retention
    watermark_at = models.DateTimeField(null=True, blank=True)
    watermark_id = models.CharField(max_length=36, blank=True)
    total = models.BigIntegerField(default=0)  # spans exported / rows deleted, ever
    last_count = models.BigIntegerField(default=0)
    last_run_at = models.DateTimeField(null=True, blank=True)
    last_success_at = models.DateTimeField(null=True, blank=True)
    last_error = models.CharField(max_length=500, blank=True)

    def __str__(self) -> str:
        return self.name
