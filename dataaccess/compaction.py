"""6-hour rollups compacted from the hour rollups, so long ranges read few, dense rows.

Why: the log writer folds every batch into minute and hour rows of one table, so the hour rows
of a month are scattered over most of its pages (about one page per row with 1,000,000
requests a month), and a 30-day chart paid for reading them all. A 6-hour row holds the sums
of the hour rows of its period with the same dimensions; they are written together, once per
period, so a month of them sits on a few thousand consecutive pages (see the README's
observability benchmark). They carry every dimension the Data Access rules filter on, so the
rules apply to them exactly as to hour rows.

`compact()` (the `rollup_compact_task`, every 5 minutes) builds the rows of each complete
period after its watermark, in order; a period is complete once every request that started in
it has been written (`GATEWAY_REQUEST_TIMEOUT_SECONDS` + 60 s after it ends). It then looks
back `LATE_WINDOW` for periods whose hour rows changed after they were compacted (records
replayed from the log writer's spool) and compacts them again. Dashboards read 6-hour rows up
to the watermark and hour rows after it (`compacted_until`).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import F, Max, Min
from django.utils import timezone

from dataaccess.models import JobState, Rollup

PERIOD_SECONDS = 6 * 3600
PERIOD = timedelta(seconds=PERIOD_SECONDS)
GRANULARITY = Rollup.Granularity.SIX_HOURS.value
JOB = "rollup-compact"
LATE_WINDOW = timedelta(days=7)
MAX_PERIODS_PER_RUN = 4 * 45
DIMENSIONS = (
    "kind",
    "provider_account",
    "model",
    "caller_type",
    "caller_id",
    "team_ids",
    "metadata_key",
    "status_class",
    "error_type",
)
INFO = ("caller_name", "teams", "metadata")


def period_start(moment: datetime) -> datetime:
    """The start of the 6-hour period (00, 06, 12, 18 UTC) holding `moment`."""
    epoch = int(moment.timestamp())
    return datetime.fromtimestamp(epoch - epoch % PERIOD_SECONDS, tz=UTC)


def compacted_until() -> datetime | None:
    """6-hour rows cover every period before this instant (None: nothing compacted yet)."""
    return JobState.objects.filter(name=JOB).values_list("watermark_at", flat=True).first()


def _sums() -> tuple[str, ...]:
    from dataaccess.rollups import SUM_FIELDS

    return SUM_FIELDS


def compact_period(start: datetime, *, now: datetime | None = None) -> int:
    """(Re)build the 6-hour rows of the period starting at `start`; returns how many."""
    now = now or timezone.now()
    sums = _sums()
    merged: dict[tuple[Any, ...], dict[str, Any]] = {}
    hours = Rollup.objects.filter(
        granularity=Rollup.Granularity.HOUR, bucket__gte=start, bucket__lt=start + PERIOD
    ).values(*DIMENSIONS, *INFO, *sums)
    with transaction.atomic():
        Rollup.objects.filter(granularity=GRANULARITY, bucket=start).delete()
        for row in hours.order_by():
            key = tuple(row[d] for d in DIMENSIONS)
            current = merged.get(key)
            if current is None:
                merged[key] = dict(row)
            else:
                for name in sums:
                    current[name] += row[name]
        Rollup.objects.bulk_create(
            [
                Rollup(granularity=GRANULARITY, bucket=start, updated_at=now, **row)
                for row in merged.values()
            ],
            batch_size=1000,
        )
    return len(merged)


def _stale_periods(since: datetime, until: datetime) -> list[datetime]:
    """Compacted periods whose hour rows were updated after their 6-hour rows were written."""
    from dataaccess.metrics import EpochBucket

    def latest(granularity: str) -> Mapping[int, datetime]:
        rows = (
            Rollup.objects.filter(granularity=granularity, bucket__gte=since, bucket__lt=until)
            .annotate(period=EpochBucket(F("bucket"), PERIOD_SECONDS))
            .values("period")
            .annotate(at=Max("updated_at"))
            .order_by()
        )
        return {int(r["period"]): r["at"] for r in rows}

    hours, compacted = latest(Rollup.Granularity.HOUR), latest(GRANULARITY)
    return [
        datetime.fromtimestamp(p, tz=UTC)
        for p, at in sorted(hours.items())
        if p not in compacted or at > compacted[p]
    ]


def compact(*, now: datetime | None = None, max_periods: int = MAX_PERIODS_PER_RUN) -> int:
    """Compact complete periods after the watermark, then late-updated ones; periods done."""
    now = now or timezone.now()
    settle = timedelta(seconds=float(settings.GATEWAY_REQUEST_TIMEOUT_SECONDS) + 60)
    complete_until = period_start(now - settle)
    JobState.objects.get_or_create(name=JOB)
    with transaction.atomic():
        state = JobState.objects.select_for_update(skip_locked=True).filter(name=JOB).first()
        if state is None:  # another worker is compacting
            return 0
        cursor = state.watermark_at
        if cursor is None:
            first = Rollup.objects.filter(granularity=Rollup.Granularity.HOUR).aggregate(
                at=Min("bucket")
            )["at"]
            cursor = period_start(first) if first is not None else complete_until
        done = 0
        while cursor < complete_until and done < max_periods:
            compact_period(cursor, now=now)
            cursor += PERIOD
            done += 1
        late = _stale_periods(cursor - LATE_WINDOW, cursor)
        for start in late[: max(max_periods - done, 0)]:
            compact_period(start, now=now)
            done += 1
        state.watermark_at = cursor
        state.last_count = done
        state.total += done
        state.last_run_at = state.last_success_at = timezone.now()
        state.last_error = ""
        state.save()
    return done
