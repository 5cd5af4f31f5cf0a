"""Load the shipped factors: grid zones from codecarbon's data files, HardwareModel rows from
the hardware catalog + embodied figures (accelerators and host components), and each country
zone's grid water intensity from its generation mix in codecarbon's data (Macknick et al. 2012
consumption factors, accounting.domain.water).

Idempotent: a second run creates and changes nothing and says so. Rows an operator edited are
never overwritten. Residual mixes ship with no data (no redistributable source): an operator
loads them with ``import_residual_mix`` (docs/factors.md). Usage:
``manage.py load_factors [--no-progress]``.
"""

from django.core.management.base import BaseCommand
from tqdm import tqdm

from accounting.factors.codecarbon_data import load_codecarbon_generation_mixes, load_codecarbon_zones
from accounting.services.factors import hardware_catalog_keys, hardware_load_catalog, zones_load_codecarbon
from accounting.services.instruments import zone_water_load_codecarbon


class Command(BaseCommand):
    help = (
        "Load grid zones (codecarbon data), the hardware catalog with embodied carbon and the country zones' "
        "grid water intensity; idempotent."
    )

    def add_arguments(self, parser):
        parser.add_argument("--no-progress", action="store_true", help="no progress bar (for logs)")

    def handle(self, *args, **opts):
        zones = load_codecarbon_zones()
        keys = hardware_catalog_keys()
        mixes = load_codecarbon_generation_mixes()
        with tqdm(
            total=len(zones) + len(keys) + len(mixes),
            desc="factors",
            unit="row",
            disable=opts["no_progress"],
            file=self.stderr,
        ) as bar:
            z = zones_load_codecarbon(zones=zones, progress=bar.update)
            h = hardware_load_catalog(progress=bar.update)
            w = zone_water_load_codecarbon(mixes=mixes, progress=bar.update)
        self.stdout.write(
            f"zones: {z.created} created, {z.updated} updated, {z.unchanged} unchanged\n"
            f"hardware: {h.created} created, {h.updated} updated, {h.unchanged} unchanged\n"
            f"grid water: {w.created} created, {w.updated} updated, {w.unchanged} unchanged"
        )
