"""Load the shipped factors: grid zones from codecarbon's data files, and HardwareModel rows
from the hardware catalog + embodied figures (accelerators and host components).

Idempotent: a second run creates and changes nothing and says so. Rows an operator edited are
never overwritten. Usage: ``manage.py load_factors [--no-progress]``.
"""

from django.core.management.base import BaseCommand
from tqdm import tqdm

from accounting.factors.codecarbon_data import load_codecarbon_zones
from accounting.services.factors import hardware_catalog_keys, hardware_load_catalog, zones_load_codecarbon


class Command(BaseCommand):
    help = "Load grid zones (codecarbon data) and the hardware catalog with embodied carbon; idempotent."

    def add_arguments(self, parser):
        parser.add_argument("--no-progress", action="store_true", help="no progress bar (for logs)")

    def handle(self, *args, **opts):
        zones = load_codecarbon_zones()
        keys = hardware_catalog_keys()
        with tqdm(
            total=len(zones) + len(keys), desc="factors", unit="row", disable=opts["no_progress"], file=self.stderr
        ) as bar:
            z = zones_load_codecarbon(zones=zones, progress=bar.update)
            h = hardware_load_catalog(progress=bar.update)
        self.stdout.write(
            f"zones: {z.created} created, {z.updated} updated, {z.unchanged} unchanged\n"
            f"hardware: {h.created} created, {h.updated} updated, {h.unchanged} unchanged"
        )
