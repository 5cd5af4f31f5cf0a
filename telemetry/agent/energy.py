"""Pure energy arithmetic: counter deltas with wrap/reset handling and trapezoidal integration."""

from __future__ import annotations

from collections.abc import Sequence

NVML_COUNTER_MODULUS = 2**64  # nvmlDeviceGetTotalEnergyConsumption is an unsigned 64-bit mJ count


def nvml_counter_delta_mj(prev_mj: int, cur_mj: int, *, max_delta_mj: float) -> int | None:
    """Energy between two NVML counter readings, or None when the counter was reset.

    The counter counts mJ since the driver loaded. A decrease is a wrap only when the previous
    reading sat within ``max_delta_mj`` of 2**64 (and the wrapped delta is plausible); any other
    decrease is a reset (driver reload, GPU reset), and so is an increase larger than the device
    could possibly draw in the interval. The caller integrates power for such an interval instead.
    """
    if cur_mj >= prev_mj:
        delta = cur_mj - prev_mj
    else:
        delta = cur_mj + NVML_COUNTER_MODULUS - prev_mj
    if delta > max_delta_mj:
        return None
    return delta


def rapl_delta_uj(prev_uj: int, cur_uj: int, *, max_energy_range_uj: int) -> int:
    """RAPL energy_uj wraps at max_energy_range_uj (it is reset to 0 past the range)."""
    if cur_uj >= prev_uj:
        return cur_uj - prev_uj
    return max_energy_range_uj - prev_uj + cur_uj


def trapezoid_j(times_s: Sequence[float], powers_w: Sequence[float]) -> float:
    """Trapezoidal integral of power samples (W) over their timestamps (s)."""
    total = 0.0
    for i in range(1, len(times_s)):
        total += (powers_w[i - 1] + powers_w[i]) * 0.5 * (times_s[i] - times_s[i - 1])
    return total
