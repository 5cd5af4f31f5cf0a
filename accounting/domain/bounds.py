"""Physical bounds of every input a scenario is built from: a power cap the device can enforce,
an average power it can draw, counts of at least one, durations above zero, a PUE of at least
one, grid intensities and utilisations in range. Input outside them is refused with
``InputError(field, message)`` naming the bound, never projected (issue 19: a 1 W cap on an H100
projected a run at 16 W and -99.5 % carbon).

The one place these limits live: the API serializers (jobs, advice, what-if) check through
here, and the dashboard's what-if forms post to those endpoints and show the message beside
the field. Pure Python.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from accounting.domain.catalog import DeviceSpec
from accounting.domain.errors import InputError

# Where the catalog cites no enforceable minimum (inventory rows, AMD parts, older boards), a
# cap below 30 % of the board's limit is refused. The cited NVIDIA minimums are 20-29 % of the
# limit (A100 SXM4 100 of 400 W, H100/H200 SXM 200 of 700 W, B200 200 of 1000 W): the rule refuses
# what no board enforces (a 1 W cap), at worst a cap a few percent above a board's real minimum.
MIN_POWER_LIMIT_FRACTION = 0.30
# Catalog idle figures are typical readings, approximate to about ±30 % (catalog.py): an
# allocated device averaging below 70 % of its idle figure is not a physical reading.
IDLE_TOLERANCE = 0.30


@dataclass(frozen=True)
class Bound:
    """A closed or half-open range of one quantity, with the name the message gives it."""

    low: float
    high: float
    unit: str = ""
    what: str = ""
    low_inclusive: bool = True

    def describe(self) -> str:
        unit = f" {self.unit}" if self.unit else ""
        what = f" ({self.what})" if self.what else ""
        if not self.low_inclusive:
            return f"above {self.low:g} and at most {self.high:g}{unit}{what}"
        return f"between {self.low:g} and {self.high:g}{unit}{what}"

    def contains(self, value: float) -> bool:
        above = value >= self.low if self.low_inclusive else value > self.low
        return math.isfinite(value) and above and value <= self.high

    def check(self, value: float, field_name: str) -> float:
        if not self.contains(value):
            raise InputError(field_name, f"must be {self.describe()}")
        return value


# Counts of devices in one scenario: at least one, at most a very large fleet.
DEVICE_COUNT = Bound(1, 1_000_000, what="devices")
HOURS = Bound(0, 1e6, "h", "a run takes some time", low_inclusive=False)
# Device-hours of one run (GPU-hours over all its devices): at most every device the count bound
# allows (1e6) held for a whole 5-year device life (5 × 8,766 h): 4.383e10 device-hours. The
# largest published training runs are far inside it (Llama 3.1 405B: 30.84 M GPU-hours, Meta's
# model card; BLOOM 176B: 1.08 M, Luccioni et al. 2022): refused beyond it is a unit mistake.
DEVICE_HOURS = Bound(0, 1_000_000 * 5 * 8766, "device-h", "GPU-hours over all devices", low_inclusive=False)
# Average power of a whole GPU server's host (CPUs, DRAM, fans, NICs; not the GPUs): an HGX/DGX
# 8-GPU system draws at most ~10.2 kW of which 5.6 kW are GPUs (NVIDIA DGX H100 datasheet).
HOST_POWER_W = Bound(0, 10_000, "W", "a GPU server's host, GPUs excluded")
DURATION_S = Bound(0, 30 * 86400, "s", "a run takes some time, at most 30 days", low_inclusive=False)
# Facility energy / IT energy: 1 by definition at best; 5 is beyond any reported data centre.
PUE = Bound(1.0, 5.0, what="facility / IT energy, 1 at best")
# Annual grid averages run from ~0 (hydro, nuclear) to ~1,100 g/kWh (lignite); hourly marginal
# figures rarely pass 1,500. 5,000 refuses unit mistakes (g/MWh, lb/MWh) without refusing data.
INTENSITY_G_PER_KWH = Bound(0.0, 5000.0, "gCO2e/kWh")
UTILISATION = Bound(0.0, 1.0, what="a fraction of the device's busy time")
MFU = Bound(0.0, 1.0, what="model FLOPs utilisation, a fraction of peak", low_inclusive=False)


def device_label(spec: DeviceSpec) -> str:
    """``H100 SXM5 80GB`` rather than ``NVIDIA H100 SXM5 80GB``."""
    name = spec.name.removeprefix(f"{spec.vendor} ") if spec.vendor else spec.name
    return name or spec.key


def power_limit_range_w(spec: DeviceSpec) -> tuple[float, float]:
    """The power limits the device enforces (W): its cited minimum, or the documented rule."""
    low = spec.min_power_limit_w
    if low is None:
        low = round(MIN_POWER_LIMIT_FRACTION * spec.max_power_w)
    return float(low), float(spec.max_power_w)


def power_cap_w(spec: DeviceSpec, value: float, field_name: str) -> float:
    """A power cap (W per device) the device can enforce."""
    low, high = power_limit_range_w(spec)
    if not (math.isfinite(value) and low <= value <= high):
        source = (
            "its enforceable power-limit range"
            if spec.min_power_limit_w is not None
            else (f"its power limit and the {MIN_POWER_LIMIT_FRACTION:.0%}-of-limit minimum used where none is cited")
        )
        raise InputError(field_name, f"must be between {low:g} and {high:g} W for {device_label(spec)} ({source})")
    return value


def avg_power_w(spec: DeviceSpec, value: float, field_name: str, *, cap_w: float | None = None) -> float:
    """An average draw (W per device) the device can sustain: from its idle figure (less its
    uncertainty) up to its power limit, or to ``cap_w`` when capped."""
    low = round(spec.idle_power_w * (1 - IDLE_TOLERANCE))
    high = spec.max_power_w if cap_w is None else min(spec.max_power_w, cap_w)
    if not (math.isfinite(value) and low <= value <= high):
        raise InputError(
            field_name,
            f"must be between {low:g} and {high:g} W for {device_label(spec)} "
            f"(its idle draw less {IDLE_TOLERANCE:.0%} to its {'cap' if cap_w is not None else 'power limit'})",
        )
    return value
