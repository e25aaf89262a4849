"""Test settings: PostgreSQL by default (as production), a fast password hasher, eager tasks."""

from __future__ import annotations

import os

os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/gateway")
os.environ.setdefault("GATEWAY_SECRET_KEY", "test-secret-key-not-for-production-0123456789abcdef")
os.environ.setdefault("GATEWAY_ENCRYPTION_KEY", "dGVzdC1lbmNyeXB0aW9uLWtleS0wMTIzNDU2Nzg5YWI=")

from gateway_project.settings import *  # noqa: F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
CELERY_TASK_ALWAYS_EAGER = True
CELERY_TASK_EAGER_PROPAGATES = True
EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
# The suite's webhook receivers listen on loopback: allowed explicitly, the check stays on.
GATEWAY_WEBHOOK_ALLOWLIST = ["127.0.0.1"]
# In-process test servers write request logs from a thread: a writer process would not see
# the test database. Gateways the tests start as processes use the default (a process).
GATEWAY_LOG_WRITER = "thread"
