"""Manage API tokens: ``tokens create|rotate|revoke|list``.

The secret is printed once, on its own line, at create and rotate; only its SHA-256 digest is
stored, so a lost secret cannot be recovered, only rotated. Every token expires: by default
after 365 days (host, scheduler), 90 (user) or 30 (admin), at most 365 (``--expires-in-days``).
Each create, rotate and revoke writes an AuditEvent (actor "manage.py tokens").

    manage.py tokens create --org acme --scope scheduler --cluster paris/hpc-a --name slurm-hpc-a
    manage.py tokens create --org acme --scope host --cluster paris/hpc-a --host gpu-node-01 --name agent
    manage.py tokens create --org acme --scope user --user alice --name alice-laptop
    manage.py tokens create --org acme --scope admin --name ci --expires-in-days 14
    manage.py tokens rotate clk_AbCdEfGh      (a token id or its prefix; the old one lives 24 h more)
    manage.py tokens rotate 12 --overlap-hours 0   (the old one ends now)
    manage.py tokens revoke 12
    manage.py tokens list --org acme [--all]
"""

from __future__ import annotations

import argparse
import datetime as dt

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction
from django.utils import timezone

from accounting.models import ApiToken, Cluster, Host, Organization
from accounting.tokens import DEFAULT_LIFETIME, MAX_LIFETIME, MAX_OVERLAP, token_create, token_revoke, token_rotate

ACTOR = "manage.py tokens"


def _days(value: str) -> int:
    if not value.isdigit() or not 1 <= int(value) <= MAX_LIFETIME.days:
        raise argparse.ArgumentTypeError(f"{value!r}: a whole number of days from 1 to {MAX_LIFETIME.days}")
    return int(value)


def _hours(value: str) -> float:
    limit = MAX_OVERLAP.total_seconds() / 3600
    try:
        hours = float(value)
    except ValueError:
        hours = -1.0
    if not 0 <= hours <= limit:  # also refuses nan
        raise argparse.ArgumentTypeError(f"{value!r}: hours from 0 to {limit:g}")
    return hours


def _when(value: dt.datetime | None) -> str:
    return f"{value:%Y-%m-%dT%H:%M:%SZ}" if value else "never"


def _cluster(org: Organization, ref: str) -> Cluster:
    """A cluster by id, or by ``site-slug/cluster-slug`` (or a cluster slug unique in the org)."""
    clusters = Cluster.objects.filter(site__org=org).select_related("site")
    if ref.isdigit():
        found = list(clusters.filter(pk=int(ref)))
    elif "/" in ref:
        site_slug, cluster_slug = ref.split("/", 1)
        found = list(clusters.filter(site__slug=site_slug, slug=cluster_slug))
    else:
        found = list(clusters.filter(slug=ref))
    if len(found) != 1:
        problem = "ambiguous, use site/cluster" if found else "not found"
        raise CommandError(f"--cluster {ref!r}: {problem} in {org.slug}")
    return found[0]


def _token(ref: str) -> ApiToken:
    tokens = ApiToken.objects.select_related("org", "host", "cluster", "user")
    found = list(tokens.filter(pk=int(ref))) if ref.isdigit() else list(tokens.filter(prefix=ref[:12]))
    if len(found) != 1:
        raise CommandError(f"token {ref!r}: {'ambiguous, use the id' if found else 'not found'}")
    return found[0]


def _lifetime(options) -> dt.timedelta | None:
    days = options.get("expires_in_days")
    return None if days is None else dt.timedelta(days=days)


class Command(BaseCommand):
    help = "Create, rotate, revoke and list API tokens (the secret is printed once)."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        create = sub.add_parser("create", help="Issue a new token")
        create.add_argument("--org", required=True, help="Organisation slug")
        create.add_argument("--scope", required=True, choices=[c.value for c in ApiToken.Scope])
        create.add_argument("--name", required=True, help="What the token is for (shown in lists)")
        create.add_argument("--cluster", help="Cluster id or site/cluster (scheduler, host)")
        create.add_argument("--host", help="Hostname in --cluster (host scope; created if unknown)")
        create.add_argument("--user", help="Username (user scope; optional for admin)")
        defaults = ", ".join(f"{scope} {life.days}" for scope, life in DEFAULT_LIFETIME.items())
        lifetime_help = f"Days until the token expires, 1 to {MAX_LIFETIME.days} (default by scope: {defaults})"
        create.add_argument("--expires-in-days", type=_days, help=lifetime_help)
        rotate = sub.add_parser("rotate", help="Issue a replacement; the old token expires after the overlap")
        rotate.add_argument("token", help="Token id or prefix")
        rotate.add_argument(
            "--overlap-hours",
            type=_hours,
            default=24.0,
            help=f"Hours the old token stays valid, 0 to {MAX_OVERLAP.days * 24} (default 24)",
        )
        rotate.add_argument("--expires-in-days", type=_days, help="Lifetime of the replacement (default by scope)")
        revoke = sub.add_parser("revoke", help="Revoke a token")
        revoke.add_argument("token", help="Token id or prefix")
        listing = sub.add_parser("list", help="List tokens (never their secrets)")
        listing.add_argument("--org", help="Only this organisation")
        listing.add_argument("--all", action="store_true", help="Include revoked and expired tokens")
        listing.add_argument(
            "--expiring-within",
            type=_days,
            metavar="DAYS",
            help="Only live tokens that expire within DAYS days (rotate these: tokens rotate <id>)",
        )

    def handle(self, *args, **options) -> None:
        getattr(self, f"_{options['action']}")(options)

    def _create(self, options) -> None:
        org = Organization.objects.filter(slug=options["org"]).first()
        if org is None:
            raise CommandError(f"--org {options['org']!r} not found")
        scope = options["scope"]
        cluster = _cluster(org, options["cluster"]) if options.get("cluster") else None
        host = None
        user = None
        if scope == ApiToken.Scope.HOST:
            if cluster is None or not options.get("host"):
                raise CommandError("a host token needs --cluster and --host")
            host, _ = Host.objects.get_or_create(cluster=cluster, hostname=options["host"])
        elif options.get("host"):
            raise CommandError("--host is only for host tokens")
        if scope == ApiToken.Scope.SCHEDULER and cluster is None:
            raise CommandError("a scheduler token needs --cluster")
        if scope in (ApiToken.Scope.USER, ApiToken.Scope.ADMIN) and cluster is not None:
            raise CommandError(f"--cluster does not apply to {scope} tokens")
        if options.get("user"):
            user = get_user_model().objects.filter(username=options["user"]).first()
            if user is None:
                raise CommandError(f"--user {options['user']!r} not found")
        elif scope == ApiToken.Scope.USER:
            raise CommandError("a user token needs --user")
        with transaction.atomic():
            issued = token_create(
                org=org,
                name=options["name"],
                scope=scope,
                host=host,
                cluster=cluster,
                user=user,
                expires_in=_lifetime(options),
                actor=ACTOR,
            )
        self._print_issued(issued.token, issued.secret)

    def _rotate(self, options) -> None:
        token = _token(options["token"])
        if token.revoked_at is not None:
            raise CommandError(f"token {token.pk} is revoked; create a new one instead")
        if token.expires_at is not None and token.expires_at <= timezone.now():
            raise CommandError(f"token {token.pk} expired at {_when(token.expires_at)}; create a new one instead")
        issued = token_rotate(
            token=token,
            overlap=dt.timedelta(hours=options["overlap_hours"]),
            expires_in=_lifetime(options),
            actor=ACTOR,
        )
        self.stdout.write(f"token {token.pk} ({token.prefix}...) stays valid until {_when(token.expires_at)}")
        self._print_issued(issued.token, issued.secret)

    def _revoke(self, options) -> None:
        token = _token(options["token"])
        if token.revoked_at is not None:
            revoked = f"{token.revoked_at:%Y-%m-%dT%H:%M:%SZ}"
            self.stdout.write(f"token {token.pk} ({token.prefix}...) was already revoked at {revoked}")
            return
        token_revoke(token=token, actor=ACTOR)
        self.stdout.write(f"revoked token {token.pk} ({token.prefix}...)")

    def _list(self, options) -> None:
        tokens = ApiToken.objects.select_related("org", "host", "cluster", "user").order_by("org__slug", "pk")
        if options.get("org"):
            tokens = tokens.filter(org__slug=options["org"])
        now = timezone.now()
        if not options["all"]:
            tokens = tokens.filter(revoked_at__isnull=True).exclude(expires_at__lte=now)
        if options.get("expiring_within") is not None:
            tokens = tokens.filter(
                revoked_at__isnull=True,
                expires_at__gt=now,
                expires_at__lte=now + dt.timedelta(days=options["expiring_within"]),
            )
        self.stdout.write(
            f"{'id':>5}  {'prefix':<12}  {'org':<16}  {'scope':<9}  {'bound to':<28}  {'last used':<20}  "
            f"{'expires':<20}  name"
        )
        for token in tokens:
            bound = (
                token.host.hostname
                if token.host
                else token.cluster.slug
                if token.cluster
                else (token.user.get_username() if token.user else "-")
            )
            used = f"{token.last_used_at:%Y-%m-%dT%H:%M:%SZ}" if token.last_used_at else "never"
            revoked = "  [revoked]" if token.revoked_at else ""
            expired = "  [expired]" if token.expires_at is not None and token.expires_at <= now else ""
            self.stdout.write(
                f"{token.pk:>5}  {token.prefix:<12}  {token.org.slug:<16}  {token.scope:<9}  {bound:<28}  {used:<20}  "
                f"{_when(token.expires_at):<20}  {token.name}{revoked}{expired}"
            )

    def _print_issued(self, token: ApiToken, secret: str) -> None:
        self.stdout.write(
            f"created {token.scope} token {token.pk} ({token.prefix}...) for {token.org.slug}: {token.name}, "
            f"expires {_when(token.expires_at)}"
        )
        self.stdout.write("secret (shown once, store it now):")
        self.stdout.write(secret)
