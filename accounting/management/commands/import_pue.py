"""Import a site PUE time series: ``manage.py import_pue FILE [--org SLUG] [--reason TEXT]``.

CSV columns: site (site slug), valid_from (ISO 8601, UTC), pue; optional source, wue_l_per_kwh.
Each row becomes a SitePue row (history kept, versioned); a row with a WUE also becomes a SiteWue
row from the same valid_from (the site's WUE series; ``Site.wue_l_per_kwh`` stays the static
value before its first row). Bad rows are listed and skipped.
"""

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from accounting.factors.csv_import import CsvFormatError, parse_pue
from accounting.models import Organization
from accounting.services.factors import pue_import


class Command(BaseCommand):
    help = "Import a site PUE series from CSV (site,valid_from,pue[,source][,wue_l_per_kwh])."

    def add_arguments(self, parser):
        parser.add_argument("csv", type=Path)
        parser.add_argument("--org", help="organisation slug (when site slugs repeat across organisations)")
        parser.add_argument("--reason", default="")
        parser.add_argument("--no-progress", action="store_true")

    def handle(self, *args, **opts):
        path: Path = opts["csv"]
        if not path.is_file():
            raise CommandError(f"no such file: {path}")
        org = None
        if opts["org"]:
            org = Organization.objects.filter(slug=opts["org"]).first()
            if org is None:
                raise CommandError(f"no organisation {opts['org']!r}")
        try:
            parsed = parse_pue(path.read_text(encoding="utf-8-sig"), default_source=f"import_pue {path.name}")
        except CsvFormatError as exc:
            raise CommandError(f"{path}: {exc}")
        reason = opts["reason"] or f"import_pue {path.name}"
        with tqdm(total=len(parsed.rows), desc="pue", unit="row", disable=opts["no_progress"], file=self.stderr) as bar:
            report = pue_import(rows=parsed.rows, org=org, reason=reason, progress=bar.update)
        rejects = sorted([(r.row, r.reason) for r in parsed.rejects] + report.rejected)
        self.stdout.write(
            f"{parsed.total} data rows read, {len(rejects)} rejected; "
            f"{report.created} created, {report.updated} updated, {report.unchanged} unchanged; "
            f"WUE series: {report.wue_created} created, {report.wue_updated} updated, {report.wue_unchanged} unchanged"
        )
        for row, reason_text in rejects:
            self.stdout.write(f"row {row}: {reason_text}")
        if rejects:
            raise SystemExit(1)
