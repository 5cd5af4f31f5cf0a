"""Push the ledger's metrics to an OpenTelemetry collector over OTLP/HTTP (docs/integrations.md):

    manage.py metrics_otlp --org acme --endpoint http://otel-collector:4318/v1/metrics --every 60
    manage.py metrics_otlp --all-orgs --endpoint ... --header "Authorization=Bearer xyz" --count 1

The same names and labels as ``/metrics``; what an admin of the organisation sees (``--all-orgs``:
every organisation, as the public endpoint). ``--count 0`` (default) runs until stopped.
"""

from __future__ import annotations

import time

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from accounting.domain.errors import StateError
from accounting.models import ApiToken, Organization
from accounting.selectors.access import Principal
from accounting.services.metrics_export import metrics_otlp_export


class Command(BaseCommand):
    help = "Push the ledger's metrics (the /metrics families) to an OTLP/HTTP endpoint."

    def add_arguments(self, parser):
        who = parser.add_mutually_exclusive_group(required=True)
        who.add_argument("--org", help="the organisation's slug (its admin's view)")
        who.add_argument("--all-orgs", action="store_true", help="every organisation")
        parser.add_argument("--endpoint", required=True, help="e.g. http://otel-collector:4318/v1/metrics")
        parser.add_argument("--header", action="append", default=[], help="NAME=VALUE, repeatable")
        parser.add_argument("--every", type=float, default=60.0, help="seconds between pushes (default 60)")
        parser.add_argument("--count", type=int, default=0, help="stop after this many pushes (0: never)")
        parser.add_argument("--timeout", type=float, default=10.0)

    def handle(self, *args, **opts):
        if opts["all_orgs"]:
            principal = Principal(scope=ApiToken.Scope.ADMIN, is_superuser=True)
        else:
            org = Organization.objects.filter(slug=opts["org"]).first()
            if org is None:
                raise CommandError(f"no organisation {opts['org']!r}")
            principal = Principal(
                scope=ApiToken.Scope.ADMIN, via_token=True, org_id=org.pk, admin_org_ids=frozenset({org.pk})
            )
        headers = {}
        for item in opts["header"]:
            name, sep, value = item.partition("=")
            if not sep or not name:
                raise CommandError(f"--header {item!r}: NAME=VALUE")
            headers[name] = value
        pushed = 0
        while True:
            try:
                points = metrics_otlp_export(
                    principal=principal,
                    endpoint=opts["endpoint"],
                    now=timezone.now(),
                    headers=headers,
                    timeout_s=opts["timeout"],
                )
                self.stdout.write(f"pushed {points} data points to {opts['endpoint']}")
            except StateError as exc:
                if opts["count"]:
                    raise CommandError(str(exc)) from exc
                self.stderr.write(str(exc))  # a long-running pusher outlives a collector's outage
            pushed += 1
            if opts["count"] and pushed >= opts["count"]:
                return
            time.sleep(opts["every"])
