"""Carbon-aware advice for a planned job: its footprint on each candidate cluster and the
cleanest start window there before a deadline.

Built on the what-if service (``accounting.services.whatif``): ``whatif_estimate`` gives the
footprint on the cluster's site (its PUE, its zone's annual factor, the device's embodied
share, with a low/high band); ``whatif_best_window`` searches the zone's stored hourly series
(recorded values win over forecasts) for the start with the least intensity. A zone without
hourly data for the whole window gets no window search: on an annual factor, when a job runs
changes nothing, and the advice says so.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from accounting.domain.errors import InputError
from accounting.domain.units import S_PER_H
from accounting.domain.whatif import EstimateResult, StartWindow
from accounting.models import Cluster
from accounting.services.whatif import whatif_best_window, whatif_estimate

DEFAULT_UTILISATION = 0.8  # busy training/inference GPU when neither power nor utilisation is given
DEFAULT_SLACK = dt.timedelta(hours=24)  # search window when no deadline is given
MAX_HORIZON = dt.timedelta(days=14)
# What-if field names -> the advice request's names.
_FIELDS = {"device_key": "hardware_model", "device_count": "gpu_count", "duration_s": "hours"}


@dataclass(frozen=True)
class Timing:
    start: dt.datetime
    end: dt.datetime
    co2e_operational_g: float
    intensity_g_per_kwh: float


@dataclass(frozen=True)
class ClusterAdvice:
    cluster: Cluster
    estimate: EstimateResult
    at_earliest: Timing
    best: Timing
    window_source: str  # "hourly" (stored hourly series) or "annual" (no hourly data: no search)
    window_candidates: int

    @property
    def co2e_embodied_g(self) -> float:
        return self.estimate.footprint.embodied_co2e_g

    @property
    def saving_g(self) -> float:
        return self.at_earliest.co2e_operational_g - self.best.co2e_operational_g

    @property
    def best_total_g(self) -> float:
        return self.best.co2e_operational_g + self.co2e_embodied_g


@dataclass(frozen=True)
class Advice:
    hardware_model: str
    gpu_count: int
    hours: float
    earliest_start: dt.datetime
    deadline: dt.datetime
    candidates: list[ClusterAdvice]
    assumptions: list[str]

    @property
    def baseline(self) -> ClusterAdvice:
        return self.candidates[0]

    @property
    def recommended(self) -> ClusterAdvice:
        return min(self.candidates, key=lambda c: (c.best_total_g, c.best.start, c.cluster.pk))


def _whatif(call, **kwargs):
    try:
        return call(**kwargs)
    except InputError as exc:
        raise InputError(_FIELDS.get(exc.field, exc.field), exc.message)


def advice_for_job(
    *,
    clusters: list[Cluster],
    hardware_model: str,
    gpu_count: int,
    hours: float,
    earliest_start: dt.datetime,
    deadline: dt.datetime | None = None,
    avg_power_w: float | None = None,
    utilisation: float | None = None,
) -> Advice:
    """Estimate a planned job on each candidate cluster and find its cleanest start window."""
    if not clusters:
        raise InputError("clusters", "no candidate cluster")
    if avg_power_w is not None and utilisation is not None:
        raise InputError("utilisation", "give avg_power_w or utilisation, not both")
    if avg_power_w is None and utilisation is None:
        utilisation = DEFAULT_UTILISATION
    duration = dt.timedelta(hours=hours)
    latest_end = deadline if deadline is not None else earliest_start + duration + DEFAULT_SLACK
    if latest_end - earliest_start < duration:
        raise InputError("deadline", "leaves less time than the job needs after earliest_start")
    if latest_end - earliest_start > MAX_HORIZON + duration:
        raise InputError("deadline", f"may be at most {MAX_HORIZON.days} days plus the job's duration away")

    results: list[ClusterAdvice] = []
    for cluster in clusters:
        site = cluster.site
        estimate: EstimateResult = _whatif(
            whatif_estimate,
            device_key=hardware_model,
            device_count=gpu_count,
            pue=site.pue,
            zone_code=site.zone.code,
            hours=hours,
            avg_power_w=avg_power_w,
            utilisation=utilisation,
        )
        footprint = estimate.footprint
        annual = Timing(
            start=earliest_start,
            end=earliest_start + duration,
            co2e_operational_g=footprint.operational_co2e_g,
            intensity_g_per_kwh=footprint.intensity_g_per_kwh,
        )
        try:
            window: StartWindow | None = whatif_best_window(
                duration_s=hours * S_PER_H,
                earliest_start=earliest_start,
                deadline=latest_end,
                zone_code=site.zone.code,
                energy_j=footprint.it_energy_j,
                pue=site.pue,
            )
        except InputError as exc:
            if exc.field not in ("zone_code", "forecast"):
                raise InputError(_FIELDS.get(exc.field, exc.field), exc.message)
            window = None  # no hourly series covering the run: the annual factor applies at any time
        if window is None:
            results.append(
                ClusterAdvice(
                    cluster=cluster,
                    estimate=estimate,
                    at_earliest=annual,
                    best=annual,
                    window_source="annual",
                    window_candidates=1,
                )
            )
            continue
        results.append(
            ClusterAdvice(
                cluster=cluster,
                estimate=estimate,
                at_earliest=Timing(
                    start=earliest_start,
                    end=earliest_start + duration,
                    co2e_operational_g=window.now_co2e_g or 0.0,
                    intensity_g_per_kwh=window.now_avg_intensity_g_per_kwh,
                ),
                best=Timing(
                    start=window.best_start,
                    end=window.best_end,
                    co2e_operational_g=window.best_co2e_g or 0.0,
                    intensity_g_per_kwh=window.best_avg_intensity_g_per_kwh,
                ),
                window_source="hourly",
                window_candidates=window.candidates,
            )
        )
    assumptions = list(results[0].estimate.assumptions)
    assumptions.append(
        "start windows from the zone's stored hourly intensity (recorded wins over forecast); zones without "
        "hourly data for the whole run use the annual factor, where the start time makes no difference"
    )
    assumptions.append("recommendation: least operational + embodied carbon; baseline: first candidate, earliest start")
    return Advice(
        hardware_model=hardware_model,
        gpu_count=gpu_count,
        hours=hours,
        earliest_start=earliest_start,
        deadline=latest_end,
        candidates=results,
        assumptions=assumptions,
    )
