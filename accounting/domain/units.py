"""Units and calendar constants of the accounting core: the one definition of each.

Pure (no imports). Every module that converts joules to kWh, hours to seconds or years to
hours imports these, so the ledger, the embodied model, the what-if engine and the dashboard
never disagree (docs/method.md, "Where each rule lives").
"""

from __future__ import annotations

J_PER_KWH = 3.6e6  # 1 kWh = 1000 W x 3600 s
S_PER_H = 3600.0
H_PER_DAY = 24.0
S_PER_DAY = S_PER_H * H_PER_DAY
G_PER_KG = 1000.0

# Julian year: lifetimes are quoted in years, leap days included (365.25 d = 8766 h), the year
# docs/method.md amortises over; never a 365-day year (8760 h).
DAYS_PER_YEAR = 365.25
HOURS_PER_YEAR = DAYS_PER_YEAR * H_PER_DAY
S_PER_YEAR = HOURS_PER_YEAR * S_PER_H


def kwh_from_j(energy_j: float | None) -> float:
    """Joules to kWh; a missing value (an empty aggregate) is 0."""
    return (energy_j or 0.0) / J_PER_KWH


def kg_from_g(mass_g: float | None) -> float:
    """Grams to kilograms; a missing value (an empty aggregate) is 0."""
    return (mass_g or 0.0) / G_PER_KG
