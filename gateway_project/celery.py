"""The Celery application; the beat schedule lives here."""

from __future__ import annotations

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "gateway_project.settings")

app = Celery("gateway")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
app.conf.beat_schedule = {
    "invitation-expire": {"task": "accounts.tasks.invitation_expire_task", "schedule": 3600.0},
    "va-rotation-scan": {"task": "accounts.tasks.va_rotation_scan_task", "schedule": 60.0},
    "va-expiry-warn": {"task": "accounts.tasks.va_expiry_warn_task", "schedule": 3600.0},
    "va-retire": {"task": "accounts.tasks.va_retire_task", "schedule": 300.0},
    "log-retention": {"task": "dataaccess.tasks.log_retention_task", "schedule": 3600.0},
    "otlp-export": {"task": "dataaccess.tasks.otlp_export_task", "schedule": 15.0},
    "rollup-compact": {"task": "dataaccess.tasks.rollup_compact_task", "schedule": 300.0},
}
