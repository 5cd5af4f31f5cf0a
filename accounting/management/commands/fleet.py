"""The fleet file and the first host's checks: ``fleet plan|apply|doctor``.

    manage.py fleet plan fleet.yaml             what apply would change (exit 0; nothing written)
    manage.py fleet apply fleet.yaml            show the plan, ask, then apply
    manage.py fleet apply fleet.yaml --yes      apply without asking (CI, config management)
    manage.py fleet doctor --token clk_... [--url https://carbonledger.example.org]

``apply`` prints each created token's secret once, on its own line (``secret <scope>:<name>
clk_...``); only its digest is stored. Errors name their path in the file
(``sites[1].pue: must be >= 1``) and exit 2 with nothing written. The document's format:
docs/integrations.md, "Fleet file".

``doctor`` checks what a new host needs, one PASS/FAIL line each: the host token (known, active,
host scope, its host), with ``--url`` the server's reach from where it runs (the health
endpoint, and the ingest endpoint accepting the token), and the host's first batches (received,
attributed, none failed, ledger rows written). Exit 1 when any check fails.
"""

from __future__ import annotations

import json
import sys
import urllib.error
import urllib.request
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db.models import Count, Max
from django.utils import timezone

from accounting.models import LedgerEntry
from accounting.services.fleet_file import (
    FleetFileInvalid,
    fleet_apply,
    fleet_document_load,
    fleet_document_validate,
    fleet_plan,
)
from accounting.tokens import TokenExpired, token_authenticate
from telemetry.queue import batch_last_error, batches_count

ACTOR = "manage.py fleet"


class Command(BaseCommand):
    help = "Plan and apply a declarative fleet file; check a new host (doctor)."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        plan = sub.add_parser("plan", help="print what apply would change")
        plan.add_argument("file", help="fleet file (YAML or JSON); - reads stdin")
        plan.add_argument("--verbose", action="store_true", help="list unchanged objects too")
        apply = sub.add_parser("apply", help="show the plan, then apply it")
        apply.add_argument("file")
        apply.add_argument("--yes", action="store_true", help="apply without asking")
        apply.add_argument("--reason", default="", help="recorded on every factor change and audit event")
        doctor = sub.add_parser("doctor", help="check a host token, the server's reach and the first batches")
        doctor.add_argument("--token", required=True, help="the host's token (clk_...)")
        doctor.add_argument("--url", help="the server's base URL as the agent uses it (checks reach from here)")
        doctor.add_argument("--timeout", type=float, default=5.0)

    def handle(self, *args, **options) -> None:
        if options["action"] == "doctor":
            failed = self._doctor(options["token"], options.get("url"), options["timeout"])
            if failed:
                raise SystemExit(1)
            return
        text = sys.stdin.read() if options["file"] == "-" else self._read(options["file"])
        try:
            spec = fleet_document_validate(fleet_document_load(text))
        except FleetFileInvalid as exc:
            for path, message in exc.errors:
                self.stderr.write(f"{options['file']}: {path}: {message}")
            raise SystemExit(2)
        plan = fleet_plan(spec=spec)
        if options["action"] == "plan":
            self.stdout.write(plan.render(verbose=options["verbose"]))
            return
        self.stdout.write(plan.render())
        if not plan.has_changes:
            self.stdout.write("Nothing to do.")
            return
        if not options["yes"]:
            if not sys.stdin.isatty():
                raise CommandError("not a terminal: pass --yes to apply")
            if input("Apply these changes? Only 'yes' applies: ").strip() != "yes":
                self.stdout.write("Not applied.")
                return
        reason = options["reason"] or f"fleet file {Path(options['file']).name}"
        try:
            result = fleet_apply(spec=spec, actor=ACTOR, reason=reason)
        except FleetFileInvalid as exc:  # the database changed between plan and apply
            for path, message in exc.errors:
                self.stderr.write(f"{options['file']}: {path}: {message}")
            raise SystemExit(2)
        applied = result.plan
        self.stdout.write(f"Applied: {applied.count('create')} created, {applied.count('update')} changed.")
        for issued in result.secrets:
            where = f" for {issued.binding}" if issued.binding else ""
            self.stdout.write(f"token {issued.scope}:{issued.name}{where} (id {issued.token_id}), shown once:")
            self.stdout.write(f"secret {issued.scope}:{issued.name} {issued.secret}")

    def _read(self, name: str) -> str:
        try:
            return Path(name).read_text(encoding="utf-8")
        except OSError as exc:
            raise CommandError(f"{name}: {exc.strerror}")

    # --- doctor ------------------------------------------------------------------------------

    def _line(self, ok: bool, what: str, detail: str) -> bool:
        style = self.style.SUCCESS if ok else self.style.ERROR
        self.stdout.write(f"{style('PASS' if ok else 'FAIL')}  {what}: {detail}")
        return not ok

    def _doctor(self, raw: str, url: str | None, timeout: float) -> bool:
        failed = False
        try:
            token = token_authenticate(raw=raw.strip())
        except TokenExpired as exc:
            return self._line(False, "token", f"expired at {exc.expires_at:%Y-%m-%dT%H:%M:%SZ}; rotate it")
        if token is None:
            return self._line(False, "token", "unknown or revoked (manage.py tokens list --org <org>)")
        if token.scope != "host" or token.host is None:
            return self._line(False, "token", f"scope is {token.scope}; the agent needs a host token")
        host = token.host
        path = f"{host.cluster.site.org.slug}/{host.cluster.site.slug}/{host.cluster.slug}/{host.hostname}"
        left = "never expires" if token.expires_at is None else f"expires {token.expires_at:%Y-%m-%d}"
        failed |= self._line(True, "token", f"host token {token.prefix}… of {path}, {left}")
        if url:
            failed |= self._reach(url.rstrip("/"), raw.strip(), timeout)
        else:
            self.stdout.write("SKIP  reach: pass --url to check the server from here")
        counts = batches_count(host_ids=[host.pk])
        if counts.last_received_at is None:  # none received
            hint = "is the agent running? journalctl -u carbonledger-agent"
            return self._line(False, "batches", f"none received from {host.hostname} yet ({hint})")
        ago = (timezone.now() - counts.last_received_at).total_seconds()
        failed |= self._line(True, "batches", f"{counts.total} received, the last {ago:.0f} s ago")
        if counts.failed:
            error = batch_last_error(host_ids=[host.pk]) or ""
            failed |= self._line(False, "attribution", f"{counts.failed} failed; last error: {error[:200]}")
        elif counts.done:
            failed |= self._line(True, "attribution", f"{counts.done} attributed, {counts.total - counts.done} waiting")
        else:
            failed |= self._line(False, "attribution", "none attributed yet (are the Celery worker and beat running?)")
        entries = LedgerEntry.objects.filter(host=host).aggregate(n=Count("id"), e=Max("hour"))
        if entries["n"]:
            failed |= self._line(
                True, "ledger", f"{entries['n']} ledger rows, the latest hour {entries['e']:%Y-%m-%dT%H:%MZ}"
            )
        else:
            failed |= self._line(False, "ledger", "no ledger rows for this host yet")
        return failed

    def _reach(self, url: str, raw: str, timeout: float) -> bool:
        try:
            with urllib.request.urlopen(f"{url}/healthz", timeout=timeout) as response:  # noqa: S310 - operator's URL
                health = json.loads(response.read() or b"{}")
            failed = self._line(True, "reach", f"{url}/healthz answers {health.get('status', '?')}")
        except (urllib.error.URLError, OSError, ValueError) as exc:
            return self._line(False, "reach", f"{url}/healthz: {getattr(exc, 'reason', exc)}")
        # An empty batch with the token: 400 (the body is refused) proves the token is accepted
        # there; 401/403 that it is not. Nothing is stored.
        request = urllib.request.Request(  # noqa: S310
            f"{url}/api/v1/ingest/batches",
            data=b"{}",
            method="POST",
            headers={"Authorization": f"Bearer {raw}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
                code = response.status
        except urllib.error.HTTPError as exc:
            code = exc.code
        except (urllib.error.URLError, OSError) as exc:
            return self._line(False, "ingest", f"{url}/api/v1/ingest/batches: {getattr(exc, 'reason', exc)}")
        if code == 400:
            return failed | self._line(True, "ingest", "the ingest endpoint accepts this token")
        return failed | self._line(False, "ingest", f"the ingest endpoint answers HTTP {code} to this token")
