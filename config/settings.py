"""CarbonLedger settings: one module, driven by environment variables (see .env.example).

Development defaults work on a machine with PostgreSQL and Redis on localhost. Production
must set DJANGO_DEBUG=false, which makes DJANGO_SECRET_KEY and DJANGO_ALLOWED_HOSTS
mandatory: there is no secret with a production-valid default.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlsplit, urlunsplit

from csp.constants import NONCE, NONE, SELF

from config.env import (
    ImproperEnv,
    env_bool,
    env_float,
    env_int,
    env_list,
    env_str,
    load_dotenv,
    parse_database_url,
)

BASE_DIR = Path(__file__).resolve().parent.parent
load_dotenv(str(BASE_DIR / ".env"))

DEBUG = env_bool("DJANGO_DEBUG", False)

if DEBUG:
    SECRET_KEY = env_str("DJANGO_SECRET_KEY", "dev-only-insecure-key-never-use-in-production")
    ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]", "testserver"])
else:
    SECRET_KEY = env_str("DJANGO_SECRET_KEY")
    if len(SECRET_KEY) < 50 or SECRET_KEY.startswith("dev-only"):
        raise ImproperEnv("DJANGO_SECRET_KEY must be at least 50 random characters in production")
    ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", [])
    if not ALLOWED_HOSTS:
        raise ImproperEnv("DJANGO_ALLOWED_HOSTS is required when DJANGO_DEBUG=false")

CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "axes",
    "csp",
    "config.apps.ConfigConfig",
    "accounting",
    "telemetry",
    "dashboard",
    "workers",
    "demo",  # demo data commands only (seed_history, demo_setup, demo_scheduler)
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "config.security.SessionLifetimeMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "csp.middleware.CSPMiddleware",
    "config.security.SecurityHeadersMiddleware",
    # Last, as django-axes requires: turns a lockout raised in authenticate() into the lockout page.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "config.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

WSGI_APPLICATION = "config.wsgi.application"
ASGI_APPLICATION = "config.asgi.application"

DATABASE_URL = env_str("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/carbonledger")
DATABASES = {"default": parse_database_url(DATABASE_URL)}
# Django's backend with a health check that costs no round trip on a quiet connection (config/postgresql/).
DATABASES["default"]["ENGINE"] = "config.postgresql"
DATABASES["default"]["CONN_MAX_AGE"] = env_int("DATABASE_CONN_MAX_AGE", 60, minimum=0)
# A persistent connection outlives a PostgreSQL restart: check it before each request reuses it.
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
DATABASES["default"]["TEST"] = {"NAME": env_str("DATABASE_TEST_NAME", "test_carbonledger")}
# No JIT compilation: our statements are short, and PostgreSQL compiles any whose *estimated* cost
# passes jit_above_cost. A rollup statement estimated high over a month of history spent 231 ms
# compiling for 1.7 ms of execution (benchmarks/attribution_profile.py --history-days 30).
_db_options: dict[str, Any] = dict(cast(dict[str, Any], DATABASES["default"].get("OPTIONS") or {}))
_db_options["options"] = " ".join(filter(None, [_db_options.get("options", ""), "-c jit=off"]))
DATABASES["default"]["OPTIONS"] = _db_options

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    # ASVS 2.1.1: at least 12 characters.
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 12}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-gb"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = Path(env_str("DJANGO_STATIC_ROOT", str(BASE_DIR / "var" / "static")))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "django.contrib.staticfiles.storage.StaticFilesStorage"
            if DEBUG
            else "whitenoise.storage.CompressedManifestStaticFilesStorage"
        )
    },
}
WHITENOISE_USE_FINDERS = DEBUG

LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/accounts/login/"

# --- security (production) -------------------------------------------------------------
SECURE_SSL_REDIRECT = env_bool("DJANGO_SECURE_SSL_REDIRECT", not DEBUG)
SESSION_COOKIE_SECURE = not DEBUG
CSRF_COOKIE_SECURE = not DEBUG
SECURE_HSTS_SECONDS = env_int("DJANGO_SECURE_HSTS_SECONDS", 0 if DEBUG else 31536000, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = not DEBUG
SECURE_HSTS_PRELOAD = env_bool("DJANGO_SECURE_HSTS_PRELOAD", not DEBUG)
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"

# --- authentication and sessions (docs/security.md) ---------------------------------------
# django-axes first: it refuses a locked-out username+address before any password is checked.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = env_int("CARBONLEDGER_LOGIN_FAILURE_LIMIT", 5, minimum=1)
AXES_COOLOFF_TIME = dt.timedelta(seconds=env_int("CARBONLEDGER_LOGIN_COOLOFF_S", 900, minimum=1))
# Per username *and* client address: one attacker cannot lock a colleague out from elsewhere.
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"
# REMOTE_ADDR, or the address seen by the outermost of N trusted reverse proxies (X-Forwarded-For
# read from the right): a client-supplied header must not pick its own lockout bucket.
TRUSTED_PROXY_COUNT = env_int("CARBONLEDGER_TRUSTED_PROXY_COUNT", 0, minimum=0)
AXES_CLIENT_IP_CALLABLE = "config.security.client_ip"
# Idle timeout: the session expires SESSION_COOKIE_AGE after the last request (the expiry is
# pushed forward at most once a minute, not on every request, see config.security).
SESSION_COOKIE_AGE = env_int("CARBONLEDGER_SESSION_IDLE_S", 30 * 60, minimum=60)
# Absolute lifetime from login, whatever the activity (ASVS 3.3.2: 12 hours).
SESSION_ABSOLUTE_AGE_S = env_int("CARBONLEDGER_SESSION_MAX_AGE_S", 12 * 3600, minimum=60)
SESSION_REFRESH_S = min(60, SESSION_COOKIE_AGE // 2)
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"

# --- response headers ----------------------------------------------------------------------
# No inline script anywhere: figures travel as <script type="application/json"> data blocks that
# static/dashboard/app.js reads. A template that ever needs an inline script uses
# {{ request.csp_nonce }} (the nonce enters the header only on pages that use it).
# Styles: the templates carry style="" attributes and Plotly styles its SVG inline.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF, NONCE],
        "style-src": [SELF, "'unsafe-inline'"],
        "img-src": [SELF, "data:", "blob:"],
        "font-src": [SELF, "data:"],
        "connect-src": [SELF],
        "worker-src": [SELF, "blob:"],
        "object-src": [NONE],
        "base-uri": [SELF],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
    }
}
PERMISSIONS_POLICY = (
    "accelerometer=(), camera=(), geolocation=(), gyroscope=(), magnetometer=(), microphone=(), payment=(), usb=()"
)

# --- email (monthly reports; docs/reports-delivery.md) ---------------------------------------
# SMTP in production; the demo uses the console or file backend, or a local SMTP sink.
_EMAIL_BACKENDS = {
    "smtp": "django.core.mail.backends.smtp.EmailBackend",
    "console": "django.core.mail.backends.console.EmailBackend",
    "file": "django.core.mail.backends.filebased.EmailBackend",
    "locmem": "django.core.mail.backends.locmem.EmailBackend",
}
_email_backend = env_str("EMAIL_BACKEND", "smtp")
# A short name or the dotted path of one of Django's backends: anything else is a typo that would
# otherwise surface only on the 2nd of the month.
EMAIL_BACKEND = _EMAIL_BACKENDS.get(_email_backend, _email_backend)
if EMAIL_BACKEND not in _EMAIL_BACKENDS.values():
    raise ImproperEnv(f"EMAIL_BACKEND={_email_backend!r}: use one of {', '.join(_EMAIL_BACKENDS)} (or its dotted path)")
EMAIL_HOST = env_str("EMAIL_HOST", "127.0.0.1")
EMAIL_PORT = env_int("EMAIL_PORT", 25, minimum=1)
if EMAIL_PORT > 65535:
    raise ImproperEnv(f"EMAIL_PORT={EMAIL_PORT} is not a TCP port")
EMAIL_HOST_USER = env_str("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = env_str("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)  # STARTTLS (usually port 587)
EMAIL_USE_SSL = env_bool("EMAIL_USE_SSL", False)  # implicit TLS (usually port 465)
if EMAIL_USE_TLS and EMAIL_USE_SSL:
    raise ImproperEnv("EMAIL_USE_TLS and EMAIL_USE_SSL are exclusive: STARTTLS (587) or implicit TLS (465)")
if bool(EMAIL_HOST_USER) != bool(EMAIL_HOST_PASSWORD):
    raise ImproperEnv("EMAIL_HOST_USER and EMAIL_HOST_PASSWORD go together (both set, or neither)")
if EMAIL_HOST_PASSWORD and not (EMAIL_USE_TLS or EMAIL_USE_SSL) and not DEBUG:
    raise ImproperEnv("SMTP credentials over a clear-text connection: set EMAIL_USE_TLS or EMAIL_USE_SSL")
EMAIL_SSL_CERTFILE = env_str("EMAIL_SSL_CERTFILE", "") or None  # client certificate, if the relay asks
EMAIL_SSL_KEYFILE = env_str("EMAIL_SSL_KEYFILE", "") or None
EMAIL_TIMEOUT = env_float("EMAIL_TIMEOUT_S", 30.0, minimum=1.0)
EMAIL_FILE_PATH = env_str("EMAIL_FILE_PATH", str(BASE_DIR / "var" / "mail"))
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "carbonledger@localhost")

# When the monthly reports go out: on REPORTS_SEND_DAY at REPORTS_SEND_TIME in the organisation's
# time zone (accounting.ReportSchedule; default REPORTS_TIME_ZONE), once the month is closed.
# Beat checks every REPORTS_TICK_S whether a run is due (workers/app.py).
REPORTS_SEND_DAY = env_int("CARBONLEDGER_REPORTS_SEND_DAY", 2, minimum=1)
if REPORTS_SEND_DAY > 28:
    raise ImproperEnv("CARBONLEDGER_REPORTS_SEND_DAY must be 1..28 (every month has that day)")
_send_time = env_str("CARBONLEDGER_REPORTS_SEND_TIME", "06:00")
try:
    REPORTS_SEND_TIME = dt.time.fromisoformat(_send_time)
except ValueError as exc:
    raise ImproperEnv(f"CARBONLEDGER_REPORTS_SEND_TIME={_send_time!r} is not HH:MM") from exc
REPORTS_TIME_ZONE = env_str("CARBONLEDGER_REPORTS_TIME_ZONE", "UTC")
try:
    zoneinfo.ZoneInfo(REPORTS_TIME_ZONE)
except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
    raise ImproperEnv(f"CARBONLEDGER_REPORTS_TIME_ZONE={REPORTS_TIME_ZONE!r} is not an IANA time zone") from exc
REPORTS_TICK_S = env_float("CARBONLEDGER_REPORTS_TICK_S", 900.0, minimum=10.0)
# Transient SMTP failures (4xx, connection refused or dropped) are retried with exponential
# backoff from REPORTS_RETRY_BACKOFF_S (capped at one hour) up to REPORTS_MAX_ATTEMPTS attempts.
REPORTS_MAX_ATTEMPTS = env_int("CARBONLEDGER_REPORTS_MAX_ATTEMPTS", 6, minimum=1)
REPORTS_RETRY_BACKOFF_S = env_float("CARBONLEDGER_REPORTS_RETRY_BACKOFF_S", 60.0, minimum=0.0)
# A row still "sending" after this long was interrupted mid-transaction: marked uncertain, not resent.
REPORTS_SENDING_TIMEOUT_S = env_float("CARBONLEDGER_REPORTS_SENDING_TIMEOUT_S", 900.0, minimum=10.0)
# How many past months beat re-checks for "revised after sending".
REPORTS_REVISION_MONTHS = env_int("CARBONLEDGER_REPORTS_REVISION_MONTHS", 3, minimum=0)
# The dashboard's address as recipients reach it: the e-mail links to the month's page.
REPORTS_DASHBOARD_URL = env_str("CARBONLEDGER_DASHBOARD_URL", "http://localhost:8000").rstrip("/")

# --- Celery ------------------------------------------------------------------------------
REDIS_URL = env_str("REDIS_URL", "redis://127.0.0.1:6379/0")
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", REDIS_URL)
CELERY_RESULT_BACKEND = env_str("CELERY_RESULT_BACKEND", REDIS_URL)
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", False)
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = env_int("CELERY_WORKER_PREFETCH_MULTIPLIER", 4, minimum=1)
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_RESULT_EXPIRES = 3600
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# The web process only nudges (the sweeper finds stored work whose message was lost), so a down or
# hung Redis must cost an ingest request about a second: one connection attempt (max_retries 0,
# not kombu's retries, ~6 s) with short socket timeouts. Workers reconnect on their own policy
# (broker_connection_retry / _max_retries), which these options do not change.
CELERY_BROKER_CONNECTION_TIMEOUT = env_float("CELERY_BROKER_CONNECTION_TIMEOUT", 1.0, minimum=0.1)
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": 3600,
    "max_retries": 0,
    "socket_connect_timeout": CELERY_BROKER_CONNECTION_TIMEOUT,
    "socket_timeout": env_float("CELERY_BROKER_SOCKET_TIMEOUT", 2.0, minimum=0.5),
}
# No caller reads task results: without this every send first subscribes to the result backend,
# which retries 20 times (~19 s) while Redis is down. A task that opts in gets short timeouts.
CELERY_TASK_IGNORE_RESULT = True
CELERY_REDIS_SOCKET_CONNECT_TIMEOUT = CELERY_BROKER_CONNECTION_TIMEOUT
CELERY_REDIS_SOCKET_TIMEOUT = CELERY_BROKER_TRANSPORT_OPTIONS["socket_timeout"]
CELERY_RESULT_BACKEND_TRANSPORT_OPTIONS = {
    "retry_policy": {"max_retries": 1, "interval_start": 0, "interval_step": 0.5, "interval_max": 0.5}
}
# How often the sweeper looks for stored work whose Celery message was lost.
SWEEPER_INTERVAL_S = env_float("CARBONLEDGER_SWEEPER_INTERVAL_S", 15.0, minimum=1.0)
# Celery time limits (workers/tasks.py). The hard limit is enforced by the prefork pool's parent,
# which kills the child at most ~1.1 s after it (billiard checks once a second, then TERM, KILL):
# no attribution task, hence no claim it took, outlives ATTRIBUTION_TIME_LIMIT_S by more than that.
ATTRIBUTION_SOFT_TIME_LIMIT_S = env_float("CARBONLEDGER_ATTRIBUTION_SOFT_TIME_LIMIT_S", 45.0, minimum=1.0)
ATTRIBUTION_TIME_LIMIT_S = env_float("CARBONLEDGER_ATTRIBUTION_TIME_LIMIT_S", 60.0, minimum=2.0)
# Sweeper, partition maintenance, intensity fetch; the recompute of a factor change is long by nature.
TASK_TIME_LIMIT_S = env_float("CARBONLEDGER_TASK_TIME_LIMIT_S", 300.0, minimum=2.0)
RECOMPUTE_TIME_LIMIT_S = env_float("CARBONLEDGER_RECOMPUTE_TIME_LIMIT_S", 3600.0, minimum=2.0)
# A batch claimed for longer than this is abandoned (its worker is dead: the hard time limit has
# passed) and re-queued by the sweeper. Default: the attribution time limit + 5 s (the kill's
# latency and clock differences between worker hosts).
CLAIM_MARGIN_MIN_S = 2.0
ATTRIBUTION_CLAIM_TIMEOUT_S = env_float("CARBONLEDGER_CLAIM_TIMEOUT_S", ATTRIBUTION_TIME_LIMIT_S + 5.0, minimum=3.0)
if ATTRIBUTION_SOFT_TIME_LIMIT_S >= ATTRIBUTION_TIME_LIMIT_S:
    raise ImproperEnv(
        f"CARBONLEDGER_ATTRIBUTION_SOFT_TIME_LIMIT_S={ATTRIBUTION_SOFT_TIME_LIMIT_S:g} must be below "
        f"CARBONLEDGER_ATTRIBUTION_TIME_LIMIT_S={ATTRIBUTION_TIME_LIMIT_S:g}"
    )
if ATTRIBUTION_CLAIM_TIMEOUT_S < ATTRIBUTION_TIME_LIMIT_S + CLAIM_MARGIN_MIN_S:
    raise ImproperEnv(
        f"CARBONLEDGER_CLAIM_TIMEOUT_S={ATTRIBUTION_CLAIM_TIMEOUT_S:g} must exceed "
        f"CARBONLEDGER_ATTRIBUTION_TIME_LIMIT_S={ATTRIBUTION_TIME_LIMIT_S:g} by at least {CLAIM_MARGIN_MIN_S:g} s: "
        "a shorter claim could be taken from a worker that is still attributing"
    )
# A process that found the attribution nudge's mark set in the broker skips the next stores'
# nudges for this long; the task that takes the mark claims once more at least this long after
# (accounting/services/work_queue.py, "Coalesced nudges"). 0 turns both off.
ATTRIBUTION_NUDGE_REUSE_S = env_float("CARBONLEDGER_NUDGE_REUSE_S", 0.25, minimum=0.0)
if ATTRIBUTION_NUDGE_REUSE_S >= min(5.0, ATTRIBUTION_SOFT_TIME_LIMIT_S / 4):
    raise ImproperEnv(
        f"CARBONLEDGER_NUDGE_REUSE_S={ATTRIBUTION_NUDGE_REUSE_S:g} must be below 5 s and a quarter of "
        "the attribution soft time limit: the nudge's mark lives 10 s and the task waits this long"
    )


# --- cache (DRF throttles) -----------------------------------------------------------------
def _redis_db(url: str, db: int) -> str:
    """``url`` with its database number replaced: the cache stays out of Celery's database."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{db}", parts.query, parts.fragment))


# Shared by every web process, so a throttle rate holds for the deployment, not per worker.
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": env_str("CARBONLEDGER_CACHE_URL", _redis_db(REDIS_URL, 1)),
        "KEY_PREFIX": "cl",
        # A down Redis fails a throttled request within a second instead of hanging it.
        "OPTIONS": {"socket_connect_timeout": 1.0, "socket_timeout": 1.0},
    }
}

# --- ingest ------------------------------------------------------------------------------
INGEST_MAX_BODY_BYTES = env_int("CARBONLEDGER_INGEST_MAX_BODY_BYTES", 8 * 1024 * 1024, minimum=1024)
INGEST_MAX_WINDOWS_PER_BATCH = env_int("CARBONLEDGER_INGEST_MAX_WINDOWS", 20_000, minimum=1)
INGEST_CLOCK_SKEW_S = env_float("CARBONLEDGER_CLOCK_SKEW_S", 300.0, minimum=0.0)
TELEMETRY_RETENTION_DAYS = env_int("CARBONLEDGER_TELEMETRY_RETENTION_DAYS", 35, minimum=1)
DATA_UPLOAD_MAX_MEMORY_SIZE = INGEST_MAX_BODY_BYTES

# --- factors -----------------------------------------------------------------------------
ELECTRICITYMAPS_API_URL = env_str("ELECTRICITYMAPS_API_URL", "https://api.electricitymap.org/v3")
ELECTRICITYMAPS_API_TOKEN = env_str("ELECTRICITYMAPS_API_TOKEN", "")
ELECTRICITYMAPS_TIMEOUT_S = env_float("ELECTRICITYMAPS_TIMEOUT_S", 5.0, minimum=0.1)

# --- REST framework ----------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "accounting.api.auth.ApiTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.LimitOffsetPagination",
    "PAGE_SIZE": 50,
    "EXCEPTION_HANDLER": "accounting.api.errors.problem_exception_handler",
    "DEFAULT_THROTTLE_RATES": {"user": env_str("CARBONLEDGER_API_THROTTLE", "6000/min")},
}
SPECTACULAR_SETTINGS = {
    "TITLE": "CarbonLedger API",
    "DESCRIPTION": "Energy and carbon accounting for AI compute: ingest, jobs, footprints, estimates.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # One name for the numeric-precision choice set used by several what-if serializers.
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "accounting.api.schema.close_fleet_document",
        "accounting.api.schema.require_polymorphic_bodies",
    ],
    "ENUM_NAME_OVERRIDES": {
        "PrecisionEnum": "accounting.domain.catalog.PRECISIONS",
        "FleetObjectKindEnum": "accounting.api.fleet_views.FLEET_OBJECT_KINDS",
        "JobKindEnum": "accounting.domain.whatif.common.KINDS",
    },
}

LOGGING: dict[str, Any] = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        # WeasyPrint logs each layout step of every report PDF at INFO, fontTools its subsetting.
        "weasyprint": {"level": "WARNING"},
        "fontTools": {"level": "WARNING"},
    },
}
