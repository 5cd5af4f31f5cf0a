"""A projection of a measured job against its ledger footprint.

The engine models accelerator energy only, at one annual intensity. The baseline of a
projection of a measured job is what the ledger charged it: GPU, host and facility energy,
operational carbon at the hourly intensities the ledger used, embodied carbon of GPUs and host.
The projection then changes only what the scenario changes:

* GPU energy and runtime: the engine's projection;
* host energy: the ledger's host energy per device-hour, over the projected device-hours;
* facility energy and operational carbon: the ledger's effective PUE and intensity (facility ÷ IT
  energy, operational carbon ÷ total energy), unless the scenario names another PUE or zone;
* embodied carbon: the host's share (ledger embodied less the source GPUs' charge) per
  device-hour, plus the target GPUs' charge for the projected device-hours.

With a scenario that changes nothing, the projection equals the ledger figures."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from accounting.domain.units import J_PER_KWH, S_PER_H

from .common import CarbonContext, EmbodiedPolicy, Footprint, positive, require
from .hardware import HardwareProjection


@dataclass(frozen=True)
class LedgerTotals:
    """A job's ledger totals (JobFootprint): ``energy_j`` = GPU + host + facility."""

    gpu_energy_j: float
    host_energy_j: float
    facility_energy_j: float
    energy_j: float
    operational_co2e_g: float
    embodied_co2e_g: float
    co2e_low_g: float
    co2e_high_g: float

    def checked(self) -> LedgerTotals:
        positive(self.gpu_energy_j, "gpu_energy_j")
        for name in ("host_energy_j", "facility_energy_j", "operational_co2e_g", "embodied_co2e_g"):
            require(getattr(self, name) >= 0, name, "must be >= 0")
        require(
            abs(self.energy_j - (self.gpu_energy_j + self.host_energy_j + self.facility_energy_j))
            <= 1e-6 * max(1.0, self.energy_j),
            "energy_j",
            "must equal GPU + host + facility energy",
        )
        return self

    @property
    def it_energy_j(self) -> float:
        return self.gpu_energy_j + self.host_energy_j

    @property
    def pue(self) -> float:
        return (self.it_energy_j + self.facility_energy_j) / self.it_energy_j

    @property
    def intensity_g_per_kwh(self) -> float:
        return self.operational_co2e_g / (self.energy_j / J_PER_KWH)


def _per_unit(footprint: Footprint) -> Footprint:
    units = footprint.units
    return dataclasses.replace(
        footprint,
        energy_per_unit_j={k: footprint.it_energy_j / v for k, v in units.items()},
        co2e_per_unit_g={k: footprint.co2e_g / v for k, v in units.items()},
        throughput_per_s={k: v / footprint.runtime_s for k, v in units.items()} if footprint.runtime_s > 0 else {},
    )


def rebase_on_ledger(
    *,
    projection: HardwareProjection,
    ledger: LedgerTotals,
    source_embodied: EmbodiedPolicy | None,
    target_embodied: EmbodiedPolicy | None,
    target_pue: float | None = None,
    target_intensity: CarbonContext | None = None,
) -> HardwareProjection:
    """``projection`` (from ``project_hardware``) with the ledger's figures as the baseline and
    the projected footprint built on them. ``target_intensity`` replaces the ledger's effective
    intensity (another zone); ``target_pue`` its effective PUE."""
    ledger.checked()
    b, p = projection.baseline, projection.projected
    notes: list[str] = []
    device_h_b = b.device_count * b.runtime_s / S_PER_H
    device_h_p = p.device_count * p.runtime_s / S_PER_H
    scale_h = device_h_p / device_h_b
    pue_b, intensity_b = ledger.pue, ledger.intensity_g_per_kwh

    if source_embodied is not None:
        gpu_emb = source_embodied.charge_g(device_h_b)
        host_emb_b = max(0.0, ledger.embodied_co2e_g - gpu_emb[0])
    else:
        gpu_emb = (0.0, 0.0, 0.0)
        host_emb_b = ledger.embodied_co2e_g
        notes.append(f"no embodied row for {b.device_key}: the ledger's embodied carbon scales with device-hours")
    baseline = _per_unit(
        dataclasses.replace(
            b,
            avg_power_w=ledger.gpu_energy_j / (b.runtime_s * b.device_count),
            it_energy_j=ledger.it_energy_j,
            facility_energy_j=ledger.facility_energy_j,
            total_energy_j=ledger.energy_j,
            operational_co2e_g=ledger.operational_co2e_g,
            embodied_co2e_g=ledger.embodied_co2e_g,
            co2e_g=ledger.operational_co2e_g + ledger.embodied_co2e_g,
            co2e_low_g=ledger.co2e_low_g,
            co2e_high_g=ledger.co2e_high_g,
            energy_low_j=ledger.it_energy_j * b.energy_low_j / b.it_energy_j,
            energy_high_j=ledger.it_energy_j * b.energy_high_j / b.it_energy_j,
            pue=pue_b,
            intensity_g_per_kwh=intensity_b,
            host_energy_j=ledger.host_energy_j,
            host_embodied_co2e_g=host_emb_b if source_embodied is not None else 0.0,
        )
    )
    notes.append(
        f"baseline = the job's ledger footprint: GPU {ledger.gpu_energy_j / J_PER_KWH:.3f} kWh + host "
        f"{ledger.host_energy_j / J_PER_KWH:.3f} kWh + facility {ledger.facility_energy_j / J_PER_KWH:.3f} kWh, "
        f"operational carbon at the hourly intensities the ledger used (effective {intensity_b:.1f} gCO2e/kWh, "
        f"PUE {pue_b:.3f})"
    )

    gpu_p = p.it_energy_j
    host_p = ledger.host_energy_j * scale_h
    it_p = gpu_p + host_p
    pue_p = pue_b if target_pue is None else target_pue
    facility_p = it_p * (pue_p - 1.0)
    total_p = it_p + facility_p
    intensity_p = intensity_b if target_intensity is None else target_intensity.intensity_g_per_kwh
    op_p = total_p / J_PER_KWH * intensity_p
    notes.append(
        f"projected host energy = the ledger's host energy per device-hour × {device_h_p:.3f} device-hours "
        f"(× {scale_h:.4g})"
    )
    if target_pue is None:
        notes.append(f"PUE unchanged: the ledger's effective {pue_b:.3f}")
    if target_intensity is None:
        notes.append(
            f"grid intensity unchanged: the ledger's effective {intensity_b:.1f} gCO2e/kWh (same hours, same profile)"
        )
    else:
        notes.append(f"grid intensity {intensity_p:g} gCO2e/kWh ({target_intensity.source})")

    host_emb_p = host_emb_b * scale_h
    if target_embodied is not None:
        tgt_emb = target_embodied.charge_g(device_h_p)
    elif source_embodied is None:
        tgt_emb = (0.0, 0.0, 0.0)
    else:
        tgt_emb = (0.0, 0.0, 0.0)
        notes.append(f"no embodied row for {p.device_key}: its GPUs' embodied carbon not counted")
    emb_p = host_emb_p + tgt_emb[0]
    co2e_p = op_p + emb_p
    # The engine's relative band for the projected scenario (model error, intensity band, embodied range).
    low_f = p.co2e_low_g / p.co2e_g if p.co2e_g > 0 else 1.0
    high_f = p.co2e_high_g / p.co2e_g if p.co2e_g > 0 else 1.0
    projected = _per_unit(
        dataclasses.replace(
            p,
            it_energy_j=it_p,
            facility_energy_j=facility_p,
            total_energy_j=total_p,
            operational_co2e_g=op_p,
            embodied_co2e_g=emb_p,
            co2e_g=co2e_p,
            co2e_low_g=co2e_p * low_f,
            co2e_high_g=co2e_p * high_f,
            energy_low_j=it_p * p.energy_low_j / p.it_energy_j,
            energy_high_j=it_p * p.energy_high_j / p.it_energy_j,
            pue=pue_p,
            intensity_g_per_kwh=intensity_p,
            host_energy_j=host_p,
            host_embodied_co2e_g=host_emb_p,
        )
    )
    # The engine's notes on what the ledger now supplies (accelerator-only IT energy, its PUE and
    # intensity) are replaced by the notes above.
    replaced = ("IT energy is accelerator energy only", "facility energy = (PUE − 1)", "grid intensity ")
    kept = [n for n in projection.assumptions if not n.startswith(replaced)]
    return dataclasses.replace(
        projection,
        baseline=baseline,
        projected=projected,
        co2e_change_g=projected.co2e_g - baseline.co2e_g,
        assumptions=notes + kept,
    )
