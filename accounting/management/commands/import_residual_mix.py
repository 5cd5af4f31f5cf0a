"""Import residual-mix factors: ``manage.py import_residual_mix FILE [--reason TEXT]``.

CSV columns: zone (GridZone code, e.g. DE), year, g_per_kwh, gases (co2 | co2e), source_detail
(the dataset and its release, e.g. "AIB European Residual Mixes 2024 v1.0, Table 2"); optional
vintage. Each row goes through ``residual_mix_set`` (versioned, audited; an unchanged row writes
nothing). Bad rows and unknown zones are listed and skipped (exit status 1). The template
accounting/factors/data/residual_mix_template.csv (FR, DE, PL) holds example rows that are
refused until filled in from the published table.
"""

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from accounting.factors.csv_import import CsvFormatError, parse_residual_mix
from accounting.services.instruments import residual_mix_import


class Command(BaseCommand):
    help = "Import residual-mix factors from CSV (zone,year,g_per_kwh,gases,source_detail[,vintage])."

    def add_arguments(self, parser):
        parser.add_argument("csv", type=Path)
        parser.add_argument("--reason", default="")
        parser.add_argument("--no-progress", action="store_true")

    def handle(self, *args, **opts):
        path: Path = opts["csv"]
        if not path.is_file():
            raise CommandError(f"no such file: {path}")
        try:
            parsed = parse_residual_mix(path.read_text(encoding="utf-8-sig"))
        except CsvFormatError as exc:
            raise CommandError(f"{path}: {exc}")
        reason = opts["reason"] or f"import_residual_mix {path.name}"
        with tqdm(
            total=len(parsed.rows), desc="residual mix", unit="row", disable=opts["no_progress"], file=self.stderr
        ) as bar:
            report = residual_mix_import(rows=parsed.rows, reason=reason, progress=bar.update)
        rejects = sorted([(r.row, r.reason) for r in parsed.rejects] + report.rejected)
        self.stdout.write(
            f"{parsed.total} data rows read, {len(rejects)} rejected; "
            f"{report.created} created, {report.updated} updated, {report.unchanged} unchanged"
        )
        for row, reason_text in rejects:
            self.stdout.write(f"row {row}: {reason_text}")
        if rejects:
            raise SystemExit(1)
