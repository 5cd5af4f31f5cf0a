"""Rebuild ledger rows after factor corrections (idempotent, resumable, with a progress bar)."""

from __future__ import annotations

import datetime as dt

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone
from tqdm import tqdm

from accounting.models import FactorChange, Site
from accounting.services.recompute import (
    batches_for_change,
    factor_changes_recompute,
    ledger_recompute,
    site_batches,
)
from telemetry.queue import batch_pks_overlapping


def _when(value: str | None) -> dt.datetime | None:
    if value is None:
        return None
    parsed = dt.datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        raise CommandError(f"{value!r}: give an explicit UTC offset, e.g. 2026-11-01T00:00:00Z")
    return parsed


class Command(BaseCommand):
    help = (
        "Re-attribute ledger batches: every pending factor change (default), one factor change "
        "(--change ID), a site and period (--site ORG/SLUG --since --until), or everything (--all)."
    )

    def add_arguments(self, parser):
        parser.add_argument("--change", type=int)
        parser.add_argument("--site", help="org-slug/site-slug")
        parser.add_argument("--since")
        parser.add_argument("--until")
        parser.add_argument("--all", action="store_true")
        parser.add_argument("--reason", default="manual recompute")

    def handle(self, *args, **opts):
        now = timezone.now()
        if opts["change"]:
            change = FactorChange.objects.filter(pk=opts["change"]).first()
            if change is None:
                raise CommandError(f"no factor change {opts['change']}")
            batches = batches_for_change(change=change)
            reason = change.reason
        elif opts["site"]:
            org_slug, _, site_slug = opts["site"].partition("/")
            site = Site.objects.filter(org__slug=org_slug, slug=site_slug).first()
            if site is None:
                raise CommandError(f"no site {opts['site']!r} (expected ORG/SITE slugs)")
            batches = site_batches(site=site, since=_when(opts["since"]), until=_when(opts["until"]))
            change, reason = None, opts["reason"]
        elif opts["all"]:
            batches, change, reason = batch_pks_overlapping(), None, opts["reason"]
        else:
            pending = FactorChange.objects.filter(recompute_status="pending")
            total = sum(len(batches_for_change(change=c)) for c in pending)
            with tqdm(total=total, unit="batch", desc="recompute") as bar:
                done = factor_changes_recompute(now=now, progress=bar.update)
            self.stdout.write(self.style.SUCCESS(f"rebuilt {done} batches for {pending.count()} factor changes"))
            return
        with tqdm(total=len(batches), unit="batch", desc="recompute") as bar:
            done = ledger_recompute(
                batch_pks=batches, reason=reason, now=now, factor_change=change, progress=bar.update
            )
        if change is not None:
            FactorChange.objects.filter(pk=change.pk).update(recompute_status="done")
        self.stdout.write(self.style.SUCCESS(f"rebuilt {done} batches"))
