"""Fleet upgrade planner: replace N devices of model A by M of model B for a yearly job mix.

The whole fleet is assumed powered all year: device-hours not busy draw idle power. Busy
device-hours of each workload move to the new model scaled by the same roofline ratio as a
single-job projection (or a measured calibration when one matches)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from accounting.domain.catalog import DeviceSpec
from accounting.domain.energy import facility_energy_j
from accounting.domain.units import HOURS_PER_YEAR, J_PER_KWH, S_PER_H

from .calibration import Calibration, MeasuredJob
from .common import (
    CarbonContext,
    EmbodiedPolicy,
    non_negative,
    positive,
    power_at,
    precision_bytes,
    require,
    spec_for,
    utilisation_equivalent,
)
from .hardware import roofline_time_ratio


@dataclass(frozen=True)
class FleetWorkload:
    """Yearly demand of one family on the OLD devices."""

    family: str
    kind: str
    device_hours_per_year: float
    precision: str = "bf16"
    avg_util: float | None = None
    avg_power_w: float | None = None  # per busy device on the old model; default from utilisation
    split: tuple[float, float, float] | None = None


def workloads_from_jobs(*, jobs: Sequence[MeasuredJob], period_s: float) -> list[FleetWorkload]:
    """Scale measured jobs observed over ``period_s`` to a year, one workload per job."""
    positive(period_s, "period_s")
    scale = HOURS_PER_YEAR * S_PER_H / period_s
    return [
        FleetWorkload(
            family=j.family,
            kind=j.kind,
            precision=j.precision,
            avg_util=j.avg_util,
            split=j.split,
            device_hours_per_year=j.device_count * j.runtime_s / S_PER_H * scale,
            avg_power_w=j.gpu_energy_j / (j.runtime_s * j.device_count),
        )
        for j in jobs
    ]


@dataclass(frozen=True)
class WorkloadShift:
    family: str
    kind: str
    old_device_h: float
    new_device_h: float
    old_power_w: float
    new_power_w: float
    method: str


@dataclass(frozen=True)
class FleetPlan:
    inputs: dict[str, Any]
    workloads: list[WorkloadShift]
    energy_before_j_per_year: float  # IT
    energy_after_j_per_year: float
    facility_energy_before_j_per_year: float
    facility_energy_after_j_per_year: float
    operational_co2e_before_g_per_year: float
    operational_co2e_after_g_per_year: float
    operational_saving_g_per_year: float
    new_embodied_co2e_g: float
    new_embodied_low_g: float
    new_embodied_high_g: float
    old_remaining_embodied_g: float  # not yet amortised if the old fleet is retired now (sunk)
    old_embodied_g_per_year: float  # amortisation charge of keeping the old fleet
    new_embodied_g_per_year: float
    payback_years: float | None
    payback_low_years: float | None
    payback_high_years: float | None
    break_even_intensity_g_per_kwh: float | None
    busy_utilisation_before: float
    busy_utilisation_after: float
    capacity_shortfall_device_h: float
    assumptions: list[str]


def plan_fleet_upgrade(
    *,
    old_key: str,
    old_count: int,
    new_key: str,
    new_count: int,
    workloads: Sequence[FleetWorkload],
    carbon: CarbonContext,
    old_embodied: EmbodiedPolicy,
    new_embodied: EmbodiedPolicy,
    old_age_years: float = 0.0,
    calibrations: Sequence[Calibration] = (),
    specs: Mapping[str, DeviceSpec] | None = None,
) -> FleetPlan:
    old = spec_for(old_key, specs, "old_key")
    new = spec_for(new_key, specs, "new_key")
    require(isinstance(old_count, int) and old_count >= 1, "old_count", "must be an integer >= 1")
    require(isinstance(new_count, int) and new_count >= 1, "new_count", "must be an integer >= 1")
    require(len(workloads) > 0, "workloads", "give at least one workload")
    carbon.checked()
    old_embodied.checked("old_embodied")
    new_embodied.checked("new_embodied")
    non_negative(old_age_years, "old_age_years")
    notes: list[str] = []
    shifts: list[WorkloadShift] = []
    busy_old_h = busy_new_h = 0.0
    busy_old_j = busy_new_j = 0.0
    for i, w in enumerate(workloads):
        non_negative(w.device_hours_per_year, f"workloads[{i}].device_hours_per_year")
        precision_bytes(w.precision, f"workloads[{i}].precision")
        if w.avg_power_w is not None:
            p_old = positive(w.avg_power_w, f"workloads[{i}].avg_power_w")
        else:
            p_old = power_at(old, 1.0 if w.avg_util is None else w.avg_util)
        u_eq = utilisation_equivalent(old, p_old)
        p_new = power_at(new, u_eq)
        cal = next(
            (
                c
                for c in calibrations
                if c.source_key == old.key
                and c.target_key == new.key
                and c.family == w.family
                and (c.kind is None or c.kind == w.kind)
            ),
            None,
        )
        if cal is not None:
            new_h = w.device_hours_per_year * cal.runtime_ratio
            new_j = w.device_hours_per_year * S_PER_H * p_old * cal.energy_ratio
            method = f"calibrated ({cal.n_source}+{cal.n_target} jobs)"
        else:
            ratio = roofline_time_ratio(
                source=old,
                target=new,
                source_count=8,
                target_count=8,
                family=w.family,
                kind=w.kind,
                precision=w.precision,
                target_precision=w.precision,
                avg_util=w.avg_util,
                split=w.split,
            )
            new_h = w.device_hours_per_year * ratio.time_ratio
            new_j = new_h * S_PER_H * p_new
            method = "roofline"
            for a in ratio.assumptions:
                if a not in notes:
                    notes.append(a)
        busy_old_h += w.device_hours_per_year
        busy_new_h += new_h
        busy_old_j += w.device_hours_per_year * S_PER_H * p_old
        busy_new_j += new_j
        shifts.append(WorkloadShift(w.family, w.kind, w.device_hours_per_year, new_h, p_old, p_new, method))
    cap_old = old_count * HOURS_PER_YEAR
    cap_new = new_count * HOURS_PER_YEAR
    require(
        busy_old_h <= cap_old * (1 + 1e-9),
        "workloads",
        f"{busy_old_h:.0f} busy device-hours exceed the old fleet's {cap_old:.0f} h per year",
    )
    shortfall = max(0.0, busy_new_h - cap_new)
    if shortfall > 0:
        notes.append(f"new fleet is {shortfall:.0f} device-hours per year short of the projected demand")
    e_before = busy_old_j + (cap_old - busy_old_h) * S_PER_H * old.idle_power_w
    e_after = busy_new_j + max(0.0, cap_new - busy_new_h) * S_PER_H * new.idle_power_w
    fac_before = facility_energy_j(it_energy_j=e_before, pue=carbon.pue)
    fac_after = facility_energy_j(it_energy_j=e_after, pue=carbon.pue)
    op_before = (e_before + fac_before) / J_PER_KWH * carbon.intensity_g_per_kwh
    op_after = (e_after + fac_after) / J_PER_KWH * carbon.intensity_g_per_kwh
    saving = op_before - op_after
    saving_kwh = (e_before + fac_before - e_after - fac_after) / J_PER_KWH
    new_g = new_count * new_embodied.embodied_kg * 1000
    new_low = new_count * new_embodied.embodied_low_kg * 1000
    new_high = new_count * new_embodied.embodied_high_kg * 1000
    old_life_y = old_embodied.lifetime_h / HOURS_PER_YEAR
    new_life_y = new_embodied.lifetime_h / HOURS_PER_YEAR
    remaining_frac = max(0.0, 1 - old_age_years / old_life_y)
    old_remaining = old_count * old_embodied.embodied_kg * 1000 * remaining_frac
    payback = new_g / saving if saving > 0 else None
    payback_low = new_low / saving if saving > 0 else None
    payback_high = new_high / saving if saving > 0 else None
    break_even = new_g / (saving_kwh * new_life_y) if saving_kwh > 0 else None
    notes.extend(
        [
            f"fleets powered all year ({HOURS_PER_YEAR:g} h): unbusy device-hours at idle power "
            f"({old.idle_power_w:g} W {old.key}, {new.idle_power_w:g} W {new.key})",
            f"facility energy with PUE {carbon.pue:g}; intensity {carbon.intensity_g_per_kwh:g} gCO2e/kWh (annual)",
            "payback = new fleet embodied ÷ yearly operational saving (None: no saving)",
            f"break-even intensity: grid intensity at which payback equals the new lifetime ({new_life_y:g} years)",
            f"old fleet: {remaining_frac:.0%} of its embodied not yet amortised at {old_age_years:g} of "
            f"{old_life_y:g} years (sunk whether kept or retired; reported, not added to payback)",
            "communication share assumed within an 8-device node on both fleets",
        ]
    )
    return FleetPlan(
        inputs={
            "old_key": old.key,
            "old_count": old_count,
            "new_key": new.key,
            "new_count": new_count,
            "pue": carbon.pue,
            "intensity_g_per_kwh": carbon.intensity_g_per_kwh,
            "old_age_years": old_age_years,
        },
        workloads=shifts,
        energy_before_j_per_year=e_before,
        energy_after_j_per_year=e_after,
        facility_energy_before_j_per_year=fac_before,
        facility_energy_after_j_per_year=fac_after,
        operational_co2e_before_g_per_year=op_before,
        operational_co2e_after_g_per_year=op_after,
        operational_saving_g_per_year=saving,
        new_embodied_co2e_g=new_g,
        new_embodied_low_g=new_low,
        new_embodied_high_g=new_high,
        old_remaining_embodied_g=old_remaining,
        old_embodied_g_per_year=old_count * old_embodied.embodied_kg * 1000 / old_life_y,
        new_embodied_g_per_year=new_g / new_life_y,
        payback_years=payback,
        payback_low_years=payback_low,
        payback_high_years=payback_high,
        break_even_intensity_g_per_kwh=break_even,
        busy_utilisation_before=busy_old_h / cap_old,
        busy_utilisation_after=min(1.0, busy_new_h / cap_new),
        capacity_shortfall_device_h=shortfall,
        assumptions=notes,
    )
