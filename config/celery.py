"""Celery bootstrap: the app lives in workers/, configured from Django settings."""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

from workers.app import app

__all__ = ["app"]
