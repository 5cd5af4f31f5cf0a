"""Carbon of attributed energy: operational (IT + facility), embodied, uncertainty band, SCI.

Pure: stdlib only; factors arrive as callables/mappings resolved by the caller.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from accounting.domain.embodied import embodied_charge_g_per_h
from accounting.domain.energy import facility_energy_j
from accounting.domain.types import (
    QUALITY_RANK,
    Account,
    Component,
    EnergyShare,
    IntensityPoint,
    LedgerLine,
    Quality,
)
from accounting.domain.units import HOURS_PER_YEAR, J_PER_KWH, S_PER_H

_GPU_COMPONENTS = (Component.GPU_ACTIVE, Component.GPU_IDLE)
_HOST_COMPONENTS = (Component.HOST_CPU, Component.HOST_DRAM, Component.HOST_UNMEASURED)
_COMPONENT_ORDER = {component: index for index, component in enumerate(Component)}
_QUALITY_BY_RANK = {rank: quality for quality, rank in QUALITY_RANK.items()}

# Relative half-width of the energy band by how the energy was obtained (method constants,
# versioned with METHOD_VERSION). The counter integrates the board sensor at firmware rate, so
# only sensor calibration error is left; integrating sparse samples adds the error of assuming
# power changes linearly between them; interpolation assumes the neighbours' power held over a
# gap nobody observed; a model (TDP x load, W/GB) is not a sensor at all.
ENERGY_UNCERTAINTY: dict[Quality, float] = {
    Quality.MEASURED: 0.02,
    Quality.INTEGRATED: 0.05,
    Quality.INTERPOLATED: 0.15,
    Quality.MODELLED: 0.30,
}


def embodied_rate_g_per_s(*, embodied_kg: float, lifetime_years: float, expected_utilisation: float) -> float:
    """Embodied carbon charged per second a device is held (gCO2e/s).

    ISO/IEC 21031:2024 (Software Carbon Intensity) amortises embodied emissions as
    ``M = TE x (TiR / EL) x (RR / ToR)``: time-share over the expected lifetime times
    resource-share. Held device-seconds carry the resource share (fractions are already in
    ``held_s``); dividing the lifetime by the expected utilisation charges the idle part of
    the device's life to the time it is actually used, so the whole footprint is recovered
    over the lifetime rather than only its utilised fraction.
    """
    if not (math.isfinite(embodied_kg) and embodied_kg >= 0):
        raise ValueError(f"embodied_kg must be finite and >= 0, got {embodied_kg!r}")
    if not (math.isfinite(lifetime_years) and lifetime_years > 0):
        raise ValueError(f"lifetime_years must be finite and > 0, got {lifetime_years!r}")
    if not (math.isfinite(expected_utilisation) and 0 < expected_utilisation <= 1):
        raise ValueError(f"expected_utilisation must be in (0, 1], got {expected_utilisation!r}")
    return (
        embodied_charge_g_per_h(
            embodied_g=embodied_kg * 1000.0,
            lifetime_h=lifetime_years * HOURS_PER_YEAR,
            expected_utilisation=expected_utilisation,
        )
        / S_PER_H
    )


@dataclass(frozen=True)
class EmbodiedRate:
    """Embodied gCO2e per held device-second (GPU plus its share of the host), with its range."""

    central_g_per_s: float
    low_g_per_s: float
    high_g_per_s: float
    version: int

    def __post_init__(self) -> None:
        values = (self.low_g_per_s, self.central_g_per_s, self.high_g_per_s)
        if not all(math.isfinite(v) and v >= 0 for v in values):
            raise ValueError(f"embodied rates must be finite and >= 0, got {values!r}")
        if not self.low_g_per_s <= self.central_g_per_s <= self.high_g_per_s:
            raise ValueError(f"embodied rates must satisfy low <= central <= high, got {values!r}")


def carbonize(
    *,
    shares: Sequence[EnergyShare],
    pue_at: Callable[[datetime], tuple[float, int]],
    intensity_at: Callable[[datetime], IntensityPoint],
    embodied_rates: Mapping[int, EmbodiedRate],
    factor_versions: Mapping[str, int | str],
) -> list[LedgerLine]:
    """Turn energy shares into ledger lines.

    IT lines (GPU and host components) carry the carbon of their own energy only. The facility
    overhead, ``(PUE - 1) x IT energy``, becomes one FACILITY line per (account, job, hour),
    so it can be shown and audited separately and is never double counted; every line records
    the hour's PUE. Embodied carbon rides on lines with held device-seconds. ``co2e_low_g`` and
    ``co2e_high_g`` bound operational + embodied: energy widened by its quality's uncertainty
    times the intensity's low/high (central where the source has no range), plus embodied at
    the rate's low/high.

    Every line records the intensity's basis and gases (also in ``factor_versions`` as
    ``intensity_basis``/``intensity_gases``). Where the intensity is direct and the hour's
    life-cycle figure is known, ``co2e_upstream_g = kWh x (life-cycle - direct)``: the upstream
    and infrastructure part (GHG Protocol Scope 3 category 3), beside operational, never in it.
    On a life-cycle intensity the upstream part is inside operational and cannot be separated:
    ``co2e_upstream_g`` is None and the basis says so.
    """
    factors = _HourlyFactors(pue_at, intensity_at)
    lines: list[LedgerLine] = []
    facility: dict[tuple[Account, int | None, datetime], _FacilityGroup] = {}

    for share in shares:
        if share.component is Component.FACILITY:
            raise ValueError("FACILITY energy is derived here from PUE; a FACILITY share would be counted twice")
        pue, pue_version, point = factors.at(share.hour)
        versions = {**factor_versions, **_intensity_versions(point), "pue": pue_version}
        energy_kwh = share.energy_j / J_PER_KWH
        uncertainty = ENERGY_UNCERTAINTY[share.quality]
        embodied_g = embodied_low_g = embodied_high_g = 0.0
        if share.held_s > 0:
            rate = _rate_for(share, embodied_rates)
            embodied_g = share.held_s * rate.central_g_per_s
            embodied_low_g = share.held_s * rate.low_g_per_s
            embodied_high_g = share.held_s * rate.high_g_per_s
            versions["embodied"] = rate.version
        low_i, high_i = _intensity_range(point)
        lines.append(
            LedgerLine(
                account=share.account,
                job_id=share.job_id,
                device_id=share.device_id,
                component=share.component,
                hour=share.hour,
                energy_j=share.energy_j,
                held_s=share.held_s,
                co2e_operational_g=energy_kwh * point.intensity_g_per_kwh,
                co2e_operational_marginal_g=(
                    None if point.marginal_g_per_kwh is None else energy_kwh * point.marginal_g_per_kwh
                ),
                co2e_embodied_g=embodied_g,
                co2e_low_g=energy_kwh * (1 - uncertainty) * low_i + embodied_low_g,
                co2e_high_g=energy_kwh * (1 + uncertainty) * high_i + embodied_high_g,
                intensity_g_per_kwh=point.intensity_g_per_kwh,
                intensity_source=point.source,
                pue=pue,
                quality=share.quality,
                measured_energy_j=share.measured_energy_j,
                factor_versions=versions,
                intensity_basis=point.basis,
                intensity_gases=point.gases,
                co2e_upstream_g=upstream_g(energy_kwh=energy_kwh, point=point),
                energy_covers=share.energy_covers,
            )
        )
        group = facility.setdefault((share.account, share.job_id, share.hour), _FacilityGroup())
        group.add(share.energy_j, share.quality, share.measured_energy_j)

    for (account, job_id, hour), group in facility.items():
        pue, pue_version, point = factors.at(hour)
        facility_j = facility_energy_j(it_energy_j=math.fsum(group.it_energy_j), pue=pue)
        if facility_j <= 0.0:
            continue
        facility_kwh = facility_j / J_PER_KWH
        low_i, high_i = _intensity_range(point)
        low_kwh = (
            math.fsum(
                facility_energy_j(it_energy_j=e, pue=pue) * (1 - ENERGY_UNCERTAINTY[q])
                for e, q in zip(group.it_energy_j, group.qualities, strict=True)
            )
            / J_PER_KWH
        )
        high_kwh = (
            math.fsum(
                facility_energy_j(it_energy_j=e, pue=pue) * (1 + ENERGY_UNCERTAINTY[q])
                for e, q in zip(group.it_energy_j, group.qualities, strict=True)
            )
            / J_PER_KWH
        )
        lines.append(
            LedgerLine(
                account=account,
                job_id=job_id,
                device_id=None,
                component=Component.FACILITY,
                hour=hour,
                energy_j=facility_j,
                held_s=0.0,
                co2e_operational_g=facility_kwh * point.intensity_g_per_kwh,
                co2e_operational_marginal_g=(
                    None if point.marginal_g_per_kwh is None else facility_kwh * point.marginal_g_per_kwh
                ),
                co2e_embodied_g=0.0,
                co2e_low_g=low_kwh * low_i,
                co2e_high_g=high_kwh * high_i,
                intensity_g_per_kwh=point.intensity_g_per_kwh,
                intensity_source=point.source,
                pue=pue,
                quality=group.worst(),
                # Derived from IT energy, so measured to the extent that energy was.
                measured_energy_j=facility_energy_j(it_energy_j=math.fsum(group.measured_energy_j), pue=pue),
                factor_versions={**factor_versions, **_intensity_versions(point), "pue": pue_version},
                intensity_basis=point.basis,
                intensity_gases=point.gases,
                co2e_upstream_g=upstream_g(energy_kwh=facility_kwh, point=point),
            )
        )

    lines.sort(key=_line_sort_key)
    return lines


def sci_per_unit(*, co2e_g: float, units: float) -> float | None:
    """SCI (gCO2e per functional unit); None when the job reported no units."""
    if units <= 0:
        return None
    return co2e_g / units


def energy_per_unit(*, energy_j: float, units: float) -> float | None:
    """Energy (J) per functional unit; None when the job reported no units."""
    if units <= 0:
        return None
    return energy_j / units


@dataclass(frozen=True)
class Totals:
    energy_j: float  # IT + facility
    it_energy_j: float
    gpu_energy_j: float
    gpu_idle_energy_j: float
    host_energy_j: float  # CPU + DRAM + unmeasured wall energy
    facility_energy_j: float
    co2e_operational_g: float
    co2e_embodied_g: float
    co2e_low_g: float
    co2e_high_g: float
    held_s: float
    # Share of GPU energy that came from MEASURED windows (the lines' measured_energy_j, so
    # independent of how windows were batched); 0.0 when there is no GPU energy, so that
    # "nothing measured" is never shown as fully measured.
    measured_fraction: float


def summarise(lines: Iterable[LedgerLine]) -> Totals:
    """Totals of a set of ledger lines (a job, a team-day, a report)."""
    lines = list(lines)

    def total(values: Iterable[float]) -> float:
        return math.fsum(values)

    gpu_energy_j = total(line.energy_j for line in lines if line.component in _GPU_COMPONENTS)
    measured_gpu_j = total(line.measured_energy_j for line in lines if line.component in _GPU_COMPONENTS)
    return Totals(
        energy_j=total(line.energy_j for line in lines),
        it_energy_j=total(line.energy_j for line in lines if line.component is not Component.FACILITY),
        gpu_energy_j=gpu_energy_j,
        gpu_idle_energy_j=total(line.energy_j for line in lines if line.component is Component.GPU_IDLE),
        host_energy_j=total(line.energy_j for line in lines if line.component in _HOST_COMPONENTS),
        facility_energy_j=total(line.energy_j for line in lines if line.component is Component.FACILITY),
        co2e_operational_g=total(line.co2e_operational_g for line in lines),
        co2e_embodied_g=total(line.co2e_embodied_g for line in lines),
        co2e_low_g=total(line.co2e_low_g for line in lines),
        co2e_high_g=total(line.co2e_high_g for line in lines),
        held_s=total(line.held_s for line in lines),
        measured_fraction=measured_gpu_j / gpu_energy_j if gpu_energy_j > 0 else 0.0,
    )


BASIS_DIRECT = "direct"
BASIS_LIFECYCLE = "lifecycle"


def upstream_g(*, energy_kwh: float, point: IntensityPoint) -> float | None:
    """Upstream (life-cycle minus direct) carbon of ``energy_kwh`` at ``point``; None unless the
    intensity is direct and the life-cycle figure of the same hour or year is known."""
    if point.basis != BASIS_DIRECT or point.lifecycle_g_per_kwh is None:
        return None
    return energy_kwh * (point.lifecycle_g_per_kwh - point.intensity_g_per_kwh)


@dataclass(frozen=True)
class BasisMix:
    """Which basis a total's operational figure rests on, by energy share (0..1 each; the rest,
    if any, is energy whose basis was not recorded). ``label`` is what a report prints."""

    direct_share: float
    lifecycle_share: float
    co2_only_share: float
    label: str


def basis_mix(
    *, energy_j: float, direct_energy_j: float, lifecycle_energy_j: float, co2_only_energy_j: float
) -> BasisMix:
    """Label a total over rows of possibly different bases: "direct", "life-cycle", or "mixed
    basis: 62.5 % direct, 37.5 % life-cycle" (never mixed silently); CO2-only rows are named."""
    if energy_j <= 0:
        return BasisMix(0.0, 0.0, 0.0, "no energy")
    direct = direct_energy_j / energy_j
    lifecycle = lifecycle_energy_j / energy_j
    co2_only = co2_only_energy_j / energy_j
    unrecorded = max(0.0, 1.0 - direct - lifecycle)
    parts = [(direct, "direct"), (lifecycle, "life-cycle"), (unrecorded, "basis not recorded")]
    present = [(share, name) for share, name in parts if share > 1e-9]
    if len(present) == 1:
        label = present[0][1]
    else:
        label = "mixed basis: " + ", ".join(f"{share * 100:.1f} % {name}" for share, name in present)
    if co2_only > 1e-9:
        label += f"; {co2_only * 100:.1f} % CO2 only (no CH4/N2O)"
    return BasisMix(direct, lifecycle, co2_only, label)


# --- helpers ----------------------------------------------------------------------------------


def _intensity_versions(point: IntensityPoint) -> dict[str, int | str]:
    return {"intensity": point.version, "intensity_basis": point.basis, "intensity_gases": point.gases}


class _HourlyFactors:
    """Resolves PUE and intensity once per hour: lines of one hour must agree on their factors."""

    def __init__(
        self,
        pue_at: Callable[[datetime], tuple[float, int]],
        intensity_at: Callable[[datetime], IntensityPoint],
    ) -> None:
        self._pue_at = pue_at
        self._intensity_at = intensity_at
        self._cache: dict[datetime, tuple[float, int, IntensityPoint]] = {}

    def at(self, hour: datetime) -> tuple[float, int, IntensityPoint]:
        if hour not in self._cache:
            pue, pue_version = self._pue_at(hour)
            if not (math.isfinite(pue) and pue >= 1.0):
                raise ValueError(f"PUE at {hour.isoformat()} must be finite and >= 1.0, got {pue!r}")
            point = self._intensity_at(hour)
            _check_intensity(hour, point)
            self._cache[hour] = (pue, pue_version, point)
        return self._cache[hour]


def _check_intensity(hour: datetime, point: IntensityPoint) -> None:
    central = point.intensity_g_per_kwh
    if not (math.isfinite(central) and central >= 0):
        raise ValueError(f"intensity at {hour.isoformat()} must be finite and >= 0, got {central!r}")
    low, high = _intensity_range(point)
    if not (math.isfinite(low) and math.isfinite(high) and 0 <= low <= central <= high):
        raise ValueError(f"intensity range at {hour.isoformat()} must satisfy 0 <= low <= central <= high")
    if point.marginal_g_per_kwh is not None and not (
        math.isfinite(point.marginal_g_per_kwh) and point.marginal_g_per_kwh >= 0
    ):
        raise ValueError(f"marginal intensity at {hour.isoformat()} must be finite and >= 0")


def _intensity_range(point: IntensityPoint) -> tuple[float, float]:
    low = point.intensity_g_per_kwh if point.low_g_per_kwh is None else point.low_g_per_kwh
    high = point.intensity_g_per_kwh if point.high_g_per_kwh is None else point.high_g_per_kwh
    return low, high


def _rate_for(share: EnergyShare, embodied_rates: Mapping[int, EmbodiedRate]) -> EmbodiedRate:
    # Held time without a rate would silently drop embodied carbon: refuse instead.
    if share.device_id is None or share.device_id not in embodied_rates:
        raise ValueError(
            f"no embodied rate for device {share.device_id!r} held {share.held_s!r} s "
            f"({share.account.value} job {share.job_id!r}, {share.hour.isoformat()})"
        )
    return embodied_rates[share.device_id]


class _FacilityGroup:
    def __init__(self) -> None:
        self.it_energy_j: list[float] = []
        self.qualities: list[Quality] = []
        self.measured_energy_j: list[float] = []

    def add(self, energy_j: float, quality: Quality, measured_energy_j: float) -> None:
        self.it_energy_j.append(energy_j)
        self.qualities.append(quality)
        self.measured_energy_j.append(measured_energy_j)

    def worst(self) -> Quality:
        return _QUALITY_BY_RANK[max(QUALITY_RANK[q] for q in self.qualities)]


def _line_sort_key(line: LedgerLine) -> tuple[datetime, str, bool, int, bool, int, int]:
    return (
        line.hour,
        line.account.value,
        line.job_id is not None,
        line.job_id if line.job_id is not None else 0,
        line.device_id is not None,
        line.device_id if line.device_id is not None else 0,
        _COMPONENT_ORDER[line.component],
    )
