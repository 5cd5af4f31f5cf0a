"""Fetch the latest grid intensity and forecast from Electricity Maps for every zone in use,
once (what beat runs hourly): ``manage.py fetch_intensity``."""

import json

from django.core.management.base import BaseCommand
from django.utils import timezone

from accounting.services.factors import intensity_fetch_latest


class Command(BaseCommand):
    help = "Fetch latest intensity + forecast from Electricity Maps (falls back on failure)."

    def handle(self, *args, **opts):
        report = intensity_fetch_latest(now=timezone.now())
        self.stdout.write(json.dumps(report, indent=2))
