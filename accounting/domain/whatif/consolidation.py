"""PUE / utilisation: what consolidating idle allocated devices would save."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from accounting.domain.energy import facility_energy_j
from accounting.domain.units import J_PER_KWH, S_PER_H

from .common import CarbonContext, EmbodiedPolicy, non_negative, require


@dataclass(frozen=True)
class ConsolidationSaving:
    inputs: dict[str, Any]
    it_energy_saved_j: float
    facility_energy_saved_j: float
    operational_saved_g: float
    embodied_avoided_g: float
    embodied_avoided_low_g: float
    embodied_avoided_high_g: float
    co2e_saved_g: float
    assumptions: list[str]


def idle_consolidation(
    *,
    idle_device_h: float,
    idle_power_w: float,
    carbon: CarbonContext,
    devices_freed: int = 0,
    period_h: float = 0.0,
    embodied: EmbodiedPolicy | None = None,
) -> ConsolidationSaving:
    """idle device-hours × idle power × PUE × intensity, plus the embodied share of devices
    freed for the period (they can serve other work or never be bought)."""
    non_negative(idle_device_h, "idle_device_h")
    non_negative(idle_power_w, "idle_power_w")
    require(isinstance(devices_freed, int) and devices_freed >= 0, "devices_freed", "must be an integer >= 0")
    non_negative(period_h, "period_h")
    require(devices_freed == 0 or embodied is not None, "embodied", "needed when devices are freed")
    carbon.checked()
    it_j = idle_device_h * idle_power_w * S_PER_H
    fac_j = facility_energy_j(it_energy_j=it_j, pue=carbon.pue)
    op_g = (it_j + fac_j) / J_PER_KWH * carbon.intensity_g_per_kwh
    emb = emb_low = emb_high = 0.0
    if embodied is not None and devices_freed:
        emb, emb_low, emb_high = embodied.checked().charge_g(devices_freed * period_h)
    return ConsolidationSaving(
        inputs={
            "idle_device_h": idle_device_h,
            "idle_power_w": idle_power_w,
            "pue": carbon.pue,
            "intensity_g_per_kwh": carbon.intensity_g_per_kwh,
            "devices_freed": devices_freed,
            "period_h": period_h,
        },
        it_energy_saved_j=it_j,
        facility_energy_saved_j=fac_j,
        operational_saved_g=op_g,
        embodied_avoided_g=emb,
        embodied_avoided_low_g=emb_low,
        embodied_avoided_high_g=emb_high,
        co2e_saved_g=op_g + emb,
        assumptions=[
            "consolidated work runs on the remaining devices without slowing (idle time only removed)",
            "freed devices are powered off or reassigned: their idle draw and embodied share for the period avoided",
            f"PUE {carbon.pue:g}, intensity {carbon.intensity_g_per_kwh:g} gCO2e/kWh",
        ],
    )
