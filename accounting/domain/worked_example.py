"""The worked example of docs/method.md §3 and the methodology page: one site, one hour, two jobs
and the fleet-overhead account, every figure of a disclosure computed by the rules the ledger and
the disclosure use (``market_based``, ``water_l``, ``embodied_charge_g_per_h``). Pure.

Inputs (round numbers an auditor can follow by hand):

- IT energy: job A 60 kWh, job B 20 kWh, fleet overhead 20 kWh; PUE 1.25, so facility energy
  (PUE − 1) × IT and totals A 75, B 25, overhead 25, site 125 kWh.
- Grid intensity of the hour: direct 200 gCO2e/kWh, life-cycle 250 gCO2e/kWh.
- One guarantee-of-origin bundle of 50 kWh at 0 g/kWh over the year (annual matching); residual
  mix 400 gCO2e/kWh.
- WUE 1.8 L/kWh of IT energy; grid water 2.0 L/kWh (1.0–4.0).
- Job A held 8 H100 SXM GPUs for the hour: 164 kg each, 5 years, expected utilisation 0.8.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime

from accounting.domain.embodied import embodied_charge_g_per_h
from accounting.domain.market_based import Instrument, ResidualFactor, market_based
from accounting.domain.units import G_PER_KG, HOURS_PER_YEAR
from accounting.domain.water import WaterFactor, water_l

HOUR = datetime(2026, 3, 2, 10, tzinfo=UTC)
YEAR_START, YEAR_END = datetime(2026, 1, 1, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC)
IT_KWH = {"job A": 60.0, "job B": 20.0, "fleet overhead": 20.0}
PUE = 1.25
DIRECT_G_PER_KWH = 200.0
LIFECYCLE_G_PER_KWH = 250.0
GO_KWH = 50.0
RESIDUAL_G_PER_KWH = 400.0
WUE_L_PER_KWH = 1.8
GRID_WATER = WaterFactor(2.0, 1.0, 4.0)
GPUS, GPU_EMBODIED_KG, LIFETIME_YEARS, EXPECTED_UTILISATION = 8, 164.0, 5.0, 0.8


@dataclass(frozen=True)
class AccountFigures:
    account: str
    it_kwh: float
    total_kwh: float
    location_based_g: float
    upstream_g: float
    market_based_g: float
    water_onsite_l: float
    water_offsite_l: float
    water_low_l: float
    water_high_l: float


@dataclass(frozen=True)
class WorkedExample:
    accounts: list[AccountFigures]
    site_total_kwh: float
    site_location_based_g: float
    site_market_based_g: float
    covered_kwh: float
    residual_kwh: float
    matching: str
    embodied_g_per_gpu_h: float
    job_a_embodied_g: float


def basis_worked_example() -> WorkedExample:
    total_kwh = {name: kwh * PUE for name, kwh in IT_KWH.items()}
    go = Instrument(id=1, energy_kwh=GO_KWH, g_per_kwh=0.0, start=YEAR_START, end=YEAR_END)
    market = market_based(
        account_kwh_by_hour={name: {HOUR: kwh} for name, kwh in total_kwh.items()},
        instruments=[go],
        residual_at=lambda _hour: ResidualFactor(RESIDUAL_G_PER_KWH, 1),
    )
    accounts = []
    for name, it_kwh in IT_KWH.items():
        water = water_l(
            it_energy_kwh=it_kwh, total_energy_kwh=total_kwh[name], wue_l_per_kwh=WUE_L_PER_KWH, grid=GRID_WATER
        )
        assert water.onsite_l is not None and water.offsite_l is not None
        accounts.append(
            AccountFigures(
                account=name,
                it_kwh=it_kwh,
                total_kwh=total_kwh[name],
                location_based_g=total_kwh[name] * DIRECT_G_PER_KWH,
                upstream_g=total_kwh[name] * (LIFECYCLE_G_PER_KWH - DIRECT_G_PER_KWH),
                market_based_g=market.by_account_g[name],
                water_onsite_l=water.onsite_l,
                water_offsite_l=water.offsite_l,
                water_low_l=water.low_l,
                water_high_l=water.high_l,
            )
        )
    per_gpu_h = embodied_charge_g_per_h(
        embodied_g=GPU_EMBODIED_KG * G_PER_KG,
        lifetime_h=LIFETIME_YEARS * HOURS_PER_YEAR,
        expected_utilisation=EXPECTED_UTILISATION,
    )
    return WorkedExample(
        accounts=accounts,
        site_total_kwh=math.fsum(total_kwh.values()),
        site_location_based_g=math.fsum(a.location_based_g for a in accounts),
        site_market_based_g=market.co2e_g,
        covered_kwh=market.covered_kwh,
        residual_kwh=market.residual_kwh,
        matching=market.matching,
        embodied_g_per_gpu_h=per_gpu_h,
        job_a_embodied_g=GPUS * 1.0 * per_gpu_h,
    )
