"""Settings: one env-driven module; every value defaults to the embedded mode (see .env.example)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import environ
from django.core.exceptions import ImproperlyConfigured

from gateway_project.keys import encryption_key_from_file, secret_key_from_file

BASE_DIR = Path(__file__).resolve().parent.parent
env = environ.Env()

VAR_DIR = Path(env.str("GATEWAY_VAR_DIR", default=str(BASE_DIR / "var")))
VAR_DIR.mkdir(parents=True, exist_ok=True)

SECRET_KEY = env.str("GATEWAY_SECRET_KEY", default="") or secret_key_from_file(
    VAR_DIR / "secret_key"
)
# Comma-separated Fernet keys; the first encrypts, all decrypt (key rotation).
GATEWAY_ENCRYPTION_KEYS = [
    k.strip()
    for k in (
        env.str("GATEWAY_ENCRYPTION_KEY", default="")
        or encryption_key_from_file(VAR_DIR / "encryption_key")
    ).split(",")
    if k.strip()
]
DEBUG = env.bool("GATEWAY_DEBUG", default=False)
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])
GATEWAY_PUBLIC_URL = env.str("GATEWAY_PUBLIC_URL", default="http://127.0.0.1:8000").rstrip("/")

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    # SSO: django-allauth's OpenID Connect and SAML providers (see the SSO block below).
    "allauth",
    "allauth.account",
    "allauth.socialaccount",
    "allauth.socialaccount.providers.openid_connect",
    "allauth.socialaccount.providers.saml",
    "django_scim",  # SCIM 2.0 (see SCIM_SERVICE_PROVIDER below)
    "accounts",
    "teams",
    "providers",
    "dataaccess",
    "proxy",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "allauth.account.middleware.AccountMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "accounts.middleware.AuditSourceMiddleware",
]

ROOT_URLCONF = "gateway_project.urls"
ASGI_APPLICATION = "gateway_project.asgi.application"
WSGI_APPLICATION = "gateway_project.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "accounts.context_processors.principal",
            ],
        },
    },
]

DATABASES: dict[str, dict[str, Any]] = {
    "default": env.db_url("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'gateway.sqlite3'}")
}
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    DATABASES["default"]["OPTIONS"] = {
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA busy_timeout=5000;",
        "transaction_mode": "IMMEDIATE",  # writers wait instead of failing
    }
else:
    DATABASES["default"]["CONN_MAX_AGE"] = env.int("DATABASE_CONN_MAX_AGE", default=60)
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
AUTH_USER_MODEL = "accounts.User"
AUTHENTICATION_BACKENDS = ["accounts.backends.EmailBackend"]
LOGIN_URL = "accounts:login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "accounts:login"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {
        "NAME": "django.contrib.auth.password_validation.MinimumLengthValidator",
        "OPTIONS": {"min_length": 10},
    },
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

SESSION_COOKIE_NAME = env.str("GATEWAY_SESSION_COOKIE_NAME", default="gateway_sessionid")
CSRF_COOKIE_NAME = env.str("GATEWAY_CSRF_COOKIE_NAME", default="gateway_csrftoken")
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
SESSION_COOKIE_SECURE = env.bool("GATEWAY_SECURE_COOKIES", default=False)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = VAR_DIR / "staticfiles"

EMAIL_HOST = env.str("EMAIL_HOST", default="")
EMAIL_PORT = env.int("EMAIL_PORT", default=25)
EMAIL_HOST_USER = env.str("EMAIL_HOST_USER", default="")
EMAIL_HOST_PASSWORD = env.str("EMAIL_HOST_PASSWORD", default="")
EMAIL_USE_TLS = env.bool("EMAIL_USE_TLS", default=False)
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="gateway@localhost")
EMAIL_BACKEND = (
    "django.core.mail.backends.smtp.EmailBackend"
    if EMAIL_HOST
    else "django.core.mail.backends.dummy.EmailBackend"
)

# Celery: the embedded default is kombu's filesystem transport, which needs no server.
REDIS_URL = env.str("REDIS_URL", default="")
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default="") or REDIS_URL or "filesystem://"
CELERY_BROKER_TRANSPORT_OPTIONS: dict[str, Any] = {}
if CELERY_BROKER_URL == "filesystem://":
    _broker_dir = VAR_DIR / "broker"
    for _sub in ("queue", "processed", "control"):
        (_broker_dir / _sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir / "queue"),
        "data_folder_out": str(_broker_dir / "queue"),
        "processed_folder": str(_broker_dir / "processed"),
        "control_folder": str(_broker_dir / "control"),  # default: ./control, in the cwd
        "store_processed": False,
    }
elif CELERY_BROKER_URL.startswith(("redis://", "rediss://")):
    # kombu's Redis client waits forever by default: with Redis paused or half-open, every task
    # sent on commit (token regenerate, invitations) hung its request, and with it Django's one
    # thread for sync views, for good. Bounded instead: a send fails after ~2 attempts of 3 s.
    CELERY_BROKER_TRANSPORT_OPTIONS = {"socket_timeout": 3, "socket_connect_timeout": 3}
    CELERY_TASK_PUBLISH_RETRY_POLICY = {
        "max_retries": 1,
        "interval_start": 0,
        "interval_step": 0.2,
        "interval_max": 0.2,
    }
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=False)
CELERY_TASK_ACKS_LATE = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "accounts.api.authentication.BearerTokenAuthentication",
        "accounts.api.authentication.ConsoleSessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["accounts.api.permissions.PolicyPermission"],
    "DEFAULT_PARSER_CLASSES": [
        "gateway_project.parsers.JSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_PAGINATION_CLASS": "gateway_project.api.Pagination",
    "PAGE_SIZE": 50,
    "EXCEPTION_HANDLER": "gateway_project.api.exception_handler",
    "UNAUTHENTICATED_USER": None,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Gateway API",
    "DESCRIPTION": "Control-plane API of the Gateway AI gateway.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
}

LOGGING: dict[str, Any] = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env.str("GATEWAY_LOG_LEVEL", default="INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}

# Bootstrap admin for `gateway serve` (a password is generated and printed once when unset).
GATEWAY_ADMIN_EMAIL = env.str("GATEWAY_ADMIN_EMAIL", default="admin@example.com")
GATEWAY_ADMIN_PASSWORD = env.str("GATEWAY_ADMIN_PASSWORD", default="")
# Hosts (fnmatch patterns) provider base URLs may point at; empty allows any.
GATEWAY_UPSTREAM_ALLOWLIST = env.list("GATEWAY_UPSTREAM_ALLOWLIST", default=[])
# How often each gateway process checks for configuration changes (revocations, grants).
GATEWAY_AUTH_POLL_SECONDS = env.float("GATEWAY_AUTH_POLL_SECONDS", default=0.5)
# The proxy: body limit, overall deadline per call, attempts on 429/5xx, and body logging
# (always | never | header_controlled: log unless `x-gateway-logging-config: {"enabled": false}`).
GATEWAY_MAX_BODY_BYTES = env.int("GATEWAY_MAX_BODY_BYTES", default=20 * 1024 * 1024)
GATEWAY_REQUEST_TIMEOUT_SECONDS = env.float("GATEWAY_REQUEST_TIMEOUT_SECONDS", default=600.0)
GATEWAY_RETRY_ATTEMPTS = env.int("GATEWAY_RETRY_ATTEMPTS", default=2)
GATEWAY_REQUEST_LOGGING_MODE = env.str("GATEWAY_REQUEST_LOGGING_MODE", default="header_controlled")
# Who writes request logs: "process" (default), a writer process beside each proxy worker,
# fed one serialised record per call; or "thread", a thread of the worker itself (the test
# suite's in-process servers, whose test database a separate process cannot see). Why a
# process: README "Request logs".
GATEWAY_LOG_WRITER = env.str("GATEWAY_LOG_WRITER", default="process")
if GATEWAY_LOG_WRITER not in ("process", "thread"):
    raise ImproperlyConfigured(
        f"GATEWAY_LOG_WRITER must be 'process' or 'thread', not {GATEWAY_LOG_WRITER!r}"
    )
# Soak runs (bench/soak.py): each proxy worker writes <dir>/<pid>.json with its task, fd and
# queued-log counts every GATEWAY_STATS_SECONDS. Empty: off.
GATEWAY_STATS_DIR = env.str("GATEWAY_STATS_DIR", default="")
GATEWAY_STATS_SECONDS = env.float("GATEWAY_STATS_SECONDS", default=5.0)
# Secret stores and notifications: per-call timeouts; Slack webhook URL prefixes allowed
# besides https://hooks.slack.com/ (e.g. a Slack-compatible relay).
GATEWAY_SECRET_STORE_TIMEOUT_SECONDS = env.float("GATEWAY_SECRET_STORE_TIMEOUT_SECONDS", default=10)
GATEWAY_NOTIFY_TIMEOUT_SECONDS = env.float("GATEWAY_NOTIFY_TIMEOUT_SECONDS", default=10)
GATEWAY_SLACK_WEBHOOK_PREFIXES = env.list("GATEWAY_SLACK_WEBHOOK_PREFIXES", default=[])
# Hosts or addresses (fnmatch patterns) notification webhooks may reach although they are
# loopback, link-local (metadata), private or otherwise non-public; empty allows none (SSRF).
GATEWAY_WEBHOOK_ALLOWLIST = env.list("GATEWAY_WEBHOOK_ALLOWLIST", default=[])
# STS endpoint override for assumed-role Bedrock accounts (default: the region's STS).
GATEWAY_AWS_STS_ENDPOINT = env.str("GATEWAY_AWS_STS_ENDPOINT", default="")
# Invitation links stay valid this long.
GATEWAY_INVITE_TTL_HOURS = env.int("GATEWAY_INVITE_TTL_HOURS", default=72)

# --- SSO -------------------------------------------------------------------------------------
# Identity providers are not configured here: they are `accounts.SsoConfig` rows (console
# Platform > Settings > SSO, or `type: settings/sso` manifests), turned into allauth apps on
# every request by accounts.sso_adapters, so a saved change applies at once in every process.
ACCOUNT_ADAPTER = "accounts.sso_adapters.GatewayAccountAdapter"
SOCIALACCOUNT_ADAPTER = "accounts.sso_adapters.GatewaySocialAccountAdapter"
SOCIALACCOUNT_PROVIDERS: dict[str, dict[str, Any]] = {
    # Our subclasses add the OIDC nonce, always verify ID token signatures, and refuse
    # replayed SAML assertions.
    "openid_connect": {
        "provider_class": "accounts.sso_adapters.GatewayOIDCProvider",
        "OAUTH_PKCE_ENABLED": True,
    },
    "saml": {"provider_class": "accounts.sso_adapters.GatewaySAMLProvider"},
}
ACCOUNT_USER_MODEL_USERNAME_FIELD = None
ACCOUNT_LOGIN_METHODS = {"email"}
ACCOUNT_SIGNUP_FIELDS = ["email*"]
ACCOUNT_EMAIL_VERIFICATION = "none"
SOCIALACCOUNT_STORE_TOKENS = False
SOCIALACCOUNT_LOGIN_ON_GET = False  # the login page's button POSTs (with CSRF)
SOCIALACCOUNT_REQUESTS_TIMEOUT = env.float("GATEWAY_SSO_HTTP_TIMEOUT", default=10.0)
# IdP discovery documents, JWKS and SAML metadata are cached this long per process.
GATEWAY_SSO_METADATA_CACHE_SECONDS = env.int("GATEWAY_SSO_METADATA_CACHE_SECONDS", default=300)

# SCIM 2.0 at /scim/v2/ (django-scim2, with the gateway's adapters and views in teams/scim*.py
# and accounts/scim.py). Only a SCIM bearer token (manage.py scim_token, or the console's
# "Regenerate SCIM token") may call it. NETLOC is unused: locations come from the request, or
# GATEWAY_PUBLIC_URL outside one.
SCIM_SERVICE_PROVIDER = {
    "NETLOC": GATEWAY_PUBLIC_URL.split("://", 1)[-1],
    "AUTHENTICATION_SCHEMES": [
        {
            "type": "oauthbearertoken",
            "name": "OAuth Bearer Token",
            "description": "The SCIM token shown when SCIM is turned on for an SSO configuration",
            "primary": True,
        }
    ],
    "USER_ADAPTER": "accounts.scim.ScimUserAdapter",
    "GROUP_ADAPTER": "teams.scim.ScimGroupAdapter",
    "GROUP_MODEL": "teams.models.Team",
    "USER_FILTER_PARSER": "teams.scim_protocol.UserFilterQuery",
    "GROUP_FILTER_PARSER": "teams.scim_protocol.GroupFilterQuery",
    "SERVICE_PROVIDER_CONFIG_MODEL": "teams.scim.ServiceProviderConfig",
    "BASE_LOCATION_GETTER": "teams.scim_protocol.base_location",
    "SCHEMAS_GETTER": "teams.scim_protocol.published_schemas",
    "AUTH_CHECK_MIDDLEWARE": "teams.scim.ScimTokenAuthMiddleware",
    "GET_IS_AUTHENTICATED_PREDICATE": "teams.scim.holds_scim_provision",
    "WWW_AUTHENTICATE_HEADER": 'Bearer realm="scim"',
}

# --- Request logs, metrics and traces (dataaccess) ---------------------------------------------
# Raw request logs and MCP tool-call rows are deleted after this many days (0 keeps them);
# the per-minute and per-hour rollups behind the charts are kept.
GATEWAY_LOG_RETENTION_DAYS = env.int("GATEWAY_LOG_RETENTION_DAYS", default=30)
# At most this many rows in one CSV export of the request log.
GATEWAY_LOG_EXPORT_MAX_ROWS = env.int("GATEWAY_LOG_EXPORT_MAX_ROWS", default=100_000)
# OTLP/HTTP trace export: the collector's base URL (spans go to <endpoint>/v1/traces); empty is
# off. Headers as `key=value,key2=value2` (e.g. an API key), the service.name resource
# attribute, and how long after a request starts its spans are exported (by then it has ended).
GATEWAY_OTLP_ENDPOINT = env.str("GATEWAY_OTLP_ENDPOINT", default="")
GATEWAY_OTLP_HEADERS = env.str("GATEWAY_OTLP_HEADERS", default="")
GATEWAY_OTLP_SERVICE_NAME = env.str("GATEWAY_OTLP_SERVICE_NAME", default="gateway")
GATEWAY_OTLP_EXPORT_DELAY_SECONDS = env.float(
    "GATEWAY_OTLP_EXPORT_DELAY_SECONDS", default=GATEWAY_REQUEST_TIMEOUT_SECONDS + 30
)
