"""Manage API tokens: ``tokens create|rotate|revoke|list``.

The secret is printed once, on its own line, at create and rotate; only its SHA-256 digest is
stored, so a lost secret cannot be recovered, only rotated.

    manage.py tokens create --org acme --scope scheduler --cluster paris/hpc-a --name slurm-hpc-a
    manage.py tokens create --org acme --scope host --cluster paris/hpc-a --host gpu-node-01 --name agent
    manage.py tokens create --org acme --scope user --user alice --name alice-laptop
    manage.py tokens rotate clk_AbCdEfGh      (a token id or its prefix)
    manage.py tokens revoke 12
    manage.py tokens list --org acme [--all]
"""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from accounting.models import ApiToken, Cluster, Host, Organization
from accounting.tokens import token_create, token_revoke, token_rotate


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
        rotate = sub.add_parser("rotate", help="Revoke a token and issue its replacement")
        rotate.add_argument("token", help="Token id or prefix")
        revoke = sub.add_parser("revoke", help="Revoke a token")
        revoke.add_argument("token", help="Token id or prefix")
        listing = sub.add_parser("list", help="List tokens (never their secrets)")
        listing.add_argument("--org", help="Only this organisation")
        listing.add_argument("--all", action="store_true", help="Include revoked tokens")

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
            issued = token_create(org=org, name=options["name"], scope=scope, host=host, cluster=cluster, user=user)
        self._print_issued(issued.token, issued.secret)

    def _rotate(self, options) -> None:
        token = _token(options["token"])
        if token.revoked_at is not None:
            raise CommandError(f"token {token.pk} is revoked; create a new one instead")
        with transaction.atomic():
            issued = token_rotate(token=token)
        self.stdout.write(f"revoked token {token.pk} ({token.prefix}...)")
        self._print_issued(issued.token, issued.secret)

    def _revoke(self, options) -> None:
        token = _token(options["token"])
        if token.revoked_at is not None:
            revoked = f"{token.revoked_at:%Y-%m-%dT%H:%M:%SZ}"
            self.stdout.write(f"token {token.pk} ({token.prefix}...) was already revoked at {revoked}")
            return
        token_revoke(token=token)
        self.stdout.write(f"revoked token {token.pk} ({token.prefix}...)")

    def _list(self, options) -> None:
        tokens = ApiToken.objects.select_related("org", "host", "cluster", "user").order_by("org__slug", "pk")
        if options.get("org"):
            tokens = tokens.filter(org__slug=options["org"])
        if not options["all"]:
            tokens = tokens.filter(revoked_at__isnull=True)
        self.stdout.write(
            f"{'id':>5}  {'prefix':<12}  {'org':<16}  {'scope':<9}  {'bound to':<28}  {'last used':<20}  name"
        )
        for token in tokens:
            bound = token.host.hostname if token.host else token.cluster.slug if token.cluster else (
                token.user.get_username() if token.user else "-"
            )
            used = f"{token.last_used_at:%Y-%m-%dT%H:%M:%SZ}" if token.last_used_at else "never"
            revoked = "  [revoked]" if token.revoked_at else ""
            self.stdout.write(
                f"{token.pk:>5}  {token.prefix:<12}  {token.org.slug:<16}  {token.scope:<9}  {bound:<28}  {used:<20}  "
                f"{token.name}{revoked}"
            )

    def _print_issued(self, token: ApiToken, secret: str) -> None:
        self.stdout.write(
            f"created {token.scope} token {token.pk} ({token.prefix}...) for {token.org.slug}: {token.name}"
        )
        self.stdout.write("secret (shown once, store it now):")
        self.stdout.write(secret)
