"""Import an hourly grid-intensity CSV exported by a provider.

``manage.py import_intensity FILE --format electricitymaps|watttime [--zone CODE]
[--column direct|lca] [--unit lbs/MWh] [--reason TEXT]``

Electricity Maps rows carry their zone ("Zone Id"; --zone overrides) and become the average
signal: by default the direct column is the hour's intensity (location-based Scope 2) with the
LCA column kept beside it (upstream = LCA - direct); ``--column lca`` makes the life-cycle value
the intensity (recorded as basis "lifecycle"). The basis is stored on every row. WattTime MOER
rows need --zone and become the marginal signal (direct, CO2 only). Bad rows are listed
(file line + reason) and skipped; good rows are upserted in bulk. Exit status 1 when any row
was rejected, so scripted imports notice.
"""

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from accounting.factors.csv_import import CsvFormatError, parse_electricitymaps, parse_watttime
from accounting.models import FactorSource, IntensitySignal
from accounting.services.factors import intensity_import


class Command(BaseCommand):
    help = "Import hourly grid intensity from an Electricity Maps or WattTime CSV export."

    def add_arguments(self, parser):
        parser.add_argument("csv", type=Path)
        parser.add_argument("--format", required=True, choices=["electricitymaps", "watttime"])
        parser.add_argument("--zone", help="zone code (required for watttime; overrides 'Zone Id')")
        parser.add_argument(
            "--column",
            choices=["direct", "lca"],
            default="direct",
            help="Electricity Maps column used as the intensity (direct: location-based Scope 2; the LCA "
            "column is kept beside it)",
        )
        parser.add_argument("--unit", default="lbs/MWh", help="WattTime value unit when the file has no unit column")
        parser.add_argument("--reason", default="", help="why (recorded on the FactorChange); default names the file")
        parser.add_argument("--no-progress", action="store_true")

    def handle(self, *args, **opts):
        path: Path = opts["csv"]
        if not path.is_file():
            raise CommandError(f"no such file: {path}")
        text = path.read_text(encoding="utf-8-sig")
        try:
            if opts["format"] == "electricitymaps":
                parsed = parse_electricitymaps(text, zone_override=opts["zone"], column=opts["column"])
                signal, source = IntensitySignal.AVERAGE, FactorSource.ELECTRICITYMAPS
            else:
                if not opts["zone"]:
                    raise CommandError("--zone is required for --format watttime")
                parsed = parse_watttime(text, zone=opts["zone"], unit=opts["unit"])
                signal, source = IntensitySignal.MARGINAL, FactorSource.WATTTIME
        except CsvFormatError as exc:
            raise CommandError(f"{path}: {exc}")
        reason = opts["reason"] or f"import_intensity {path.name} ({opts['format']})"
        with tqdm(
            total=len(parsed.rows), desc="hours", unit="row", disable=opts["no_progress"], file=self.stderr
        ) as bar:
            report = intensity_import(
                rows=parsed.rows, signal=signal, source=source, reason=reason, progress=bar.update
            )
        self.stdout.write(
            f"{parsed.total} data rows read, {len(parsed.rejects)} rejected; {len(parsed.rows)} hours: "
            f"{report.created} created, {report.updated} updated, {report.unchanged} unchanged"
        )
        lifecycle_hours = sum(1 for r in parsed.rows if r.basis == "lifecycle")
        if opts["format"] == "electricitymaps" and opts["column"] == "direct" and lifecycle_hours:
            self.stdout.write(
                f"{lifecycle_hours} hour(s) without a direct value kept on the life-cycle basis (labelled)"
            )
        for code, n in sorted(report.unknown_zones.items()):
            self.stdout.write(f"skipped {n} hours for unknown zone {code!r} (create it first, e.g. load_factors)")
        for r in parsed.rejects:
            self.stdout.write(f"row {r.row}: {r.reason}")
        if parsed.rejects or report.unknown_zones:
            raise SystemExit(1)
