"""Test overrides on top of config.settings (PostgreSQL and Redis are real; see README)."""

import os

os.environ.setdefault("DJANGO_DEBUG", "true")

from config.settings import *  # noqa: F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # speed only; never in production
# Unit tests call services directly; integration tests start real workers and enable nudges.
CARBONLEDGER_SKIP_NUDGE = os.environ.get("CARBONLEDGER_SKIP_NUDGE", "true") == "true"
# Mail stays in memory, except in a worker an integration test starts against its own SMTP server.
if os.environ.get("CARBONLEDGER_TEST_EMAIL_BACKEND") != "smtp":
    EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
STORAGES["staticfiles"]["BACKEND"] = "django.contrib.staticfiles.storage.StaticFilesStorage"  # noqa: F405
LOGGING["root"]["level"] = "WARNING"  # noqa: F405
STATIC_ROOT.mkdir(parents=True, exist_ok=True)  # noqa: F405 - whitenoise warns on a missing root
# The cache is the real Redis (throttles must be shared across processes). One key namespace per
# test run, inherited by the processes it starts (integration workers, subprocess checks): runs
# of other test databases and earlier runs never see each other's throttle counters.
_test_db = os.environ.get("DATABASE_TEST_NAME") or "test_carbonledger"
os.environ.setdefault("CARBONLEDGER_TEST_CACHE_PREFIX", f"test:{_test_db}:{os.getpid()}")
CACHES["default"]["KEY_PREFIX"] = os.environ["CARBONLEDGER_TEST_CACHE_PREFIX"]  # noqa: F405
