"""Shared pieces of the what-if engine: carbon context, embodied policy, the Footprint every
scenario reports, workload-family defaults and input checks. Pure Python, time is an argument."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from accounting.domain.catalog import CATALOG, PRECISION_BYTES, DeviceSpec, canonical_key
from accounting.domain.embodied import DEFAULT_LIFETIME, embodied_charge_g_per_h
from accounting.domain.energy import facility_energy_j
from accounting.domain.errors import InputError
from accounting.domain.units import G_PER_KG, HOURS_PER_YEAR, J_PER_KWH, S_PER_H

GB = 1e9

# Relative model uncertainty (one-sided, used symmetrically for the low/high band).
REL_ERROR_MEASURED = 0.05  # NVML energy counter / integration (ML.ENERGY reports a few %)
REL_ERROR_CALIBRATED = 0.10  # floor for a ratio measured on our own fleet
REL_ERROR_ROOFLINE = 0.30  # roofline projections vs published speedups: tens of percent
REL_ERROR_ESTIMATE = 0.25  # planned job from declared inputs only

FAMILIES = ("llm", "moe", "recommender", "other")
KINDS = ("training", "inference")

# (compute, memory-bandwidth, communication) shares of busy time per family/kind.
FAMILY_SPLITS: Mapping[tuple[str, str], tuple[float, float, float]] = {
    ("llm", "training"): (0.70, 0.15, 0.15),
    ("llm", "inference"): (0.20, 0.75, 0.05),  # decode-heavy serving
    ("moe", "training"): (0.55, 0.20, 0.25),  # all-to-all expert exchange
    ("moe", "inference"): (0.15, 0.70, 0.15),
    ("recommender", "training"): (0.30, 0.55, 0.15),
    ("recommender", "inference"): (0.20, 0.75, 0.05),
    ("other", "training"): (0.50, 0.40, 0.10),
    ("other", "inference"): (0.50, 0.40, 0.10),
}


def require(cond: bool, field_name: str, message: str) -> None:
    if not cond:
        raise InputError(field_name, message)


# The checks below raise as ``require`` does, spelled as ``if`` so the type narrows.
def positive(value: float | None, field_name: str) -> float:
    if value is None or not (math.isfinite(value) and value > 0):
        raise InputError(field_name, "must be a positive number")
    return float(value)


def non_negative(value: float | None, field_name: str) -> float:
    if value is None or not (math.isfinite(value) and value >= 0):
        raise InputError(field_name, "must be >= 0")
    return float(value)


def fraction(value: float | None, field_name: str) -> float:
    if value is None or not (math.isfinite(value) and 0 <= value <= 1):
        raise InputError(field_name, "must be within [0, 1]")
    return float(value)


def spec_for(key: str, specs: Mapping[str, DeviceSpec] | None, field_name: str = "device_key") -> DeviceSpec:
    table = CATALOG if specs is None else specs
    spec = table.get(key) or table.get(canonical_key(key))  # an old key (catalog.KEY_ALIASES) reads as its rename
    if spec is None:
        raise InputError(field_name, f"unknown device {key!r}; known: {', '.join(sorted(table))}")
    return spec


def precision_bytes(precision: str, field_name: str = "precision") -> float:
    require(precision in PRECISION_BYTES, field_name, f"unknown precision {precision!r}")
    return PRECISION_BYTES[precision]


def family_split(family: str, kind: str) -> tuple[float, float, float]:
    require(family in FAMILIES, "family", f"must be one of {FAMILIES}")
    require(kind in KINDS, "kind", f"must be one of {KINDS}")
    return FAMILY_SPLITS[(family, kind)]


def flops_at(spec: DeviceSpec, precision: str, assumptions: list[str]) -> float:
    rate, used = spec.flops_at(precision)
    if used != precision:
        assumptions.append(
            f"{spec.key} has no {precision.upper()} rate: uses its {used.upper()} rate "
            f"({rate / 1e12:g} TFLOP/s dense), the next wider format it supports"
        )
    return rate


def power_at(spec: DeviceSpec, utilisation: float, max_power_w: float | None = None) -> float:
    """Linear power model between idle and the power limit."""
    top = spec.max_power_w if max_power_w is None else max_power_w
    return spec.idle_power_w + (top - spec.idle_power_w) * utilisation


def utilisation_equivalent(spec: DeviceSpec, avg_power_w: float, max_power_w: float | None = None) -> float:
    top = spec.max_power_w if max_power_w is None else max_power_w
    if top <= spec.idle_power_w:
        return 1.0
    return min(1.0, max(0.0, (avg_power_w - spec.idle_power_w) / (top - spec.idle_power_w)))


@dataclass(frozen=True)
class CarbonContext:
    """Where the energy is drawn: facility PUE and grid intensity (with an optional band)."""

    pue: float
    intensity_g_per_kwh: float
    intensity_low_g_per_kwh: float | None = None
    intensity_high_g_per_kwh: float | None = None
    source: str = ""

    def checked(self) -> CarbonContext:
        require(math.isfinite(self.pue) and 1.0 <= self.pue <= 5.0, "pue", "must be within [1, 5]")
        non_negative(self.intensity_g_per_kwh, "intensity_g_per_kwh")
        if self.intensity_low_g_per_kwh is not None:
            require(
                0 <= self.intensity_low_g_per_kwh <= self.intensity_g_per_kwh,
                "intensity_low_g_per_kwh",
                "must be within [0, intensity_g_per_kwh]",
            )
        if self.intensity_high_g_per_kwh is not None:
            require(
                self.intensity_high_g_per_kwh >= self.intensity_g_per_kwh,
                "intensity_high_g_per_kwh",
                "must be >= intensity_g_per_kwh",
            )
        return self

    @property
    def low(self) -> float:
        return self.intensity_g_per_kwh if self.intensity_low_g_per_kwh is None else self.intensity_low_g_per_kwh

    @property
    def high(self) -> float:
        return self.intensity_g_per_kwh if self.intensity_high_g_per_kwh is None else self.intensity_high_g_per_kwh


@dataclass(frozen=True)
class EmbodiedPolicy:
    """Per-device embodied footprint and how it is amortised (SCI time share, DESIGN.md §3):
    a job holding a device for h hours is charged h × embodied / (lifetime_h × expected_utilisation)."""

    embodied_kg: float
    embodied_low_kg: float
    embodied_high_kg: float
    # The ledger's defaults (embodied.DEFAULT_LIFETIME), so an estimate amortises as the ledger does.
    lifetime_h: float = DEFAULT_LIFETIME["gpu"].lifetime_years * HOURS_PER_YEAR
    expected_utilisation: float = DEFAULT_LIFETIME["gpu"].expected_utilisation
    source: str = ""

    def checked(self, field_name: str = "embodied") -> EmbodiedPolicy:
        non_negative(self.embodied_kg, f"{field_name}.embodied_kg")
        require(
            0 <= self.embodied_low_kg <= self.embodied_kg <= self.embodied_high_kg,
            f"{field_name}.embodied_low_kg",
            "must satisfy 0 <= low <= embodied_kg <= high",
        )
        positive(self.lifetime_h, f"{field_name}.lifetime_h")
        require(0 < self.expected_utilisation <= 1, f"{field_name}.expected_utilisation", "must be within (0, 1]")
        return self

    def charge_g(self, device_h: float) -> tuple[float, float, float]:
        """(mid, low, high) grams charged for ``device_h`` device-hours."""

        def per_h(kg: float) -> float:
            return embodied_charge_g_per_h(
                embodied_g=kg * G_PER_KG, lifetime_h=self.lifetime_h, expected_utilisation=self.expected_utilisation
            )

        return (
            device_h * per_h(self.embodied_kg),
            device_h * per_h(self.embodied_low_kg),
            device_h * per_h(self.embodied_high_kg),
        )


@dataclass(frozen=True)
class Footprint:
    """One scenario's outcome. ``basis`` says whether it is measured, calibrated or modelled."""

    device_key: str
    device_count: int
    runtime_s: float
    avg_power_w: float  # per device, IT (GPU) power
    it_energy_j: float
    facility_energy_j: float  # (PUE − 1) × IT energy
    total_energy_j: float
    operational_co2e_g: float
    embodied_co2e_g: float
    co2e_g: float
    co2e_low_g: float
    co2e_high_g: float
    energy_low_j: float
    energy_high_j: float
    pue: float
    intensity_g_per_kwh: float
    basis: str
    units: dict[str, float] = field(default_factory=dict)
    energy_per_unit_j: dict[str, float] = field(default_factory=dict)  # IT energy per unit
    co2e_per_unit_g: dict[str, float] = field(default_factory=dict)  # operational + embodied per unit
    throughput_per_s: dict[str, float] = field(default_factory=dict)
    # Of it_energy_j / embodied_co2e_g: the host's share (CPU, DRAM; CPUs, DRAM, SSD, chassis).
    host_energy_j: float = 0.0
    host_embodied_co2e_g: float = 0.0


def build_footprint(
    *,
    device_key: str,
    device_count: int,
    runtime_s: float,
    it_energy_j: float,
    carbon: CarbonContext,
    embodied: EmbodiedPolicy | None,
    rel_error: float,
    basis: str,
    units: Mapping[str, float] | None = None,
    host_energy_j: float = 0.0,
    host_embodied_g: tuple[float, float, float] = (0.0, 0.0, 0.0),
) -> Footprint:
    """The one place energy becomes carbon, so every scenario (and the estimator) agrees.

    ``it_energy_j`` includes ``host_energy_j`` (the host's share, as the ledger's IT energy does);
    ``host_embodied_g`` (mid, low, high) is added to the device's embodied charge."""
    carbon.checked()
    facility_j = facility_energy_j(it_energy_j=it_energy_j, pue=carbon.pue)
    total_j = it_energy_j + facility_j
    op_g = total_j / J_PER_KWH * carbon.intensity_g_per_kwh
    op_low = total_j * (1 - rel_error) / J_PER_KWH * carbon.low
    op_high = total_j * (1 + rel_error) / J_PER_KWH * carbon.high
    device_h = device_count * runtime_s / S_PER_H
    if embodied is None:
        emb, emb_low, emb_high = 0.0, 0.0, 0.0
    else:
        emb, emb_low, emb_high = embodied.charge_g(device_h)
    emb, emb_low, emb_high = emb + host_embodied_g[0], emb_low + host_embodied_g[1], emb_high + host_embodied_g[2]
    emb_low *= 1 - rel_error
    emb_high *= 1 + rel_error
    units = {k: float(v) for k, v in (units or {}).items() if v and v > 0}
    co2e = op_g + emb
    return Footprint(
        device_key=device_key,
        device_count=device_count,
        runtime_s=runtime_s,
        avg_power_w=(it_energy_j - host_energy_j) / (runtime_s * device_count)
        if runtime_s > 0 and device_count > 0
        else 0.0,
        it_energy_j=it_energy_j,
        facility_energy_j=facility_j,
        total_energy_j=total_j,
        operational_co2e_g=op_g,
        embodied_co2e_g=emb,
        co2e_g=co2e,
        co2e_low_g=op_low + emb_low,
        co2e_high_g=op_high + emb_high,
        energy_low_j=it_energy_j * (1 - rel_error),
        energy_high_j=it_energy_j * (1 + rel_error),
        pue=carbon.pue,
        intensity_g_per_kwh=carbon.intensity_g_per_kwh,
        basis=basis,
        units=units,
        energy_per_unit_j={k: it_energy_j / v for k, v in units.items()},
        co2e_per_unit_g={k: co2e / v for k, v in units.items()},
        throughput_per_s={k: v / runtime_s for k, v in units.items()} if runtime_s > 0 else {},
        host_energy_j=host_energy_j,
        host_embodied_co2e_g=host_embodied_g[0],
    )


def carbon_assumptions(carbon: CarbonContext, embodied: EmbodiedPolicy | None, rel_error: float) -> list[str]:
    out = [
        f"facility energy = (PUE − 1) × IT energy with PUE {carbon.pue:g}",
        f"grid intensity {carbon.intensity_g_per_kwh:g} gCO2e/kWh"
        + (f" ({carbon.source})" if carbon.source else "")
        + f", band {carbon.low:g}–{carbon.high:g}",
        f"low/high band: ±{rel_error:.0%} on energy and runtime, intensity band, embodied low/high",
    ]
    if embodied is None:
        out.append("embodied carbon not given: reported as 0")
    else:
        out.append(
            f"embodied {embodied.embodied_kg:g} kgCO2e per device ({embodied.embodied_low_kg:g}–"
            f"{embodied.embodied_high_kg:g}) amortised over {embodied.lifetime_h:g} h × "
            f"{embodied.expected_utilisation:g} expected utilisation"
            + (f" ({embodied.source})" if embodied.source else "")
        )
    return out


def meta_number(meta: Mapping[str, Any], *names: str) -> float | None:
    for name in names:
        value = meta.get(name)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0:
            return float(value)
    return None


def ring_allreduce_factor(n: int) -> float:
    """Bytes each device sends per byte of gradient in a ring all-reduce: 2(n−1)/n."""
    return 0.0 if n <= 1 else 2.0 * (n - 1) / n


def link_gb_s(spec: DeviceSpec, count: int, *, devices_per_node: int = 8, inter_node_gb_s: float = 50.0) -> float:
    """Slowest link a collective over ``count`` devices crosses (GB/s)."""
    if count > devices_per_node:
        return inter_node_gb_s
    return spec.interconnect_gb_s if spec.interconnect_gb_s > 0 else spec.pcie_gb_s
