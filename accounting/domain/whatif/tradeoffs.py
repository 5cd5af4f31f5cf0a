"""Efficiency vs footprint: Pareto front of job points (minimise carbon per unit, maximise
throughput and quality) and what separates the efficient jobs from the rest."""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from accounting.domain.pareto import pareto_front_partial

from .common import require


@dataclass(frozen=True)
class JobPoint:
    job_id: int | str
    throughput_per_s: float
    energy_per_unit_j: float
    co2e_per_unit_g: float
    quality: float | None = None
    attributes: Mapping[str, Any] = field(default_factory=dict)  # device, batch, cap_w, zone, idle_share, ...


@dataclass(frozen=True)
class TradeoffSummary:
    front: list[int | str]
    rest: list[int | str]
    numeric: dict[str, dict[str, float | None]]  # attr -> {"front_median", "rest_median"}
    categorical: dict[str, dict[str, Any]]  # attr -> {"front_mode", "front_share", "rest_mode", "rest_share"}
    assumptions: list[str]


def pareto_front(points: Sequence[JobPoint]) -> TradeoffSummary:
    require(len(points) > 0, "points", "give at least one job point")
    ids = [p.job_id for p in points]
    require(len(set(ids)) == len(ids), "points", "job ids must be unique")
    # Minimise carbon per unit, maximise throughput and quality (where both jobs report it).
    objectives: list[tuple[float | None, ...]] = [(p.co2e_per_unit_g, p.throughput_per_s, p.quality) for p in points]
    if all(p.quality is None for p in points):
        objectives = [o[:2] for o in objectives]
    on_front = pareto_front_partial(objectives, maximise=(False, True, True)[: len(objectives[0])])
    front = [points[i] for i in on_front]
    front_ids = {p.job_id for p in front}
    rest = [p for p in points if p.job_id not in front_ids]
    keys = sorted({k for p in points for k in p.attributes})
    numeric: dict[str, dict[str, float | None]] = {}
    categorical: dict[str, dict[str, Any]] = {}

    def med(group: list[JobPoint], k: str) -> float | None:
        vals = [
            float(p.attributes[k])
            for p in group
            if isinstance(p.attributes.get(k), (int, float)) and not isinstance(p.attributes.get(k), bool)
        ]
        return statistics.median(vals) if vals else None

    def mode(group: list[JobPoint], k: str) -> tuple[Any, float | None]:
        vals = [p.attributes[k] for p in group if k in p.attributes and p.attributes[k] is not None]
        if not vals:
            return None, None
        value, n = sorted(Counter(map(str, vals)).items(), key=lambda kv: (-kv[1], kv[0]))[0]
        return value, n / len(vals)

    for k in keys:
        sample = [p.attributes[k] for p in points if p.attributes.get(k) is not None]
        if sample and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in sample):
            numeric[k] = {"front_median": med(front, k), "rest_median": med(rest, k)}
        else:
            fm, fs = mode(front, k)
            rm, rs = mode(rest, k)
            categorical[k] = {"front_mode": fm, "front_share": fs, "rest_mode": rm, "rest_share": rs}
    return TradeoffSummary(
        front=[p.job_id for p in front],
        rest=[p.job_id for p in rest],
        numeric=numeric,
        categorical=categorical,
        assumptions=[
            "objectives: minimise carbon per unit, maximise throughput, maximise quality where both jobs report it",
            "compare jobs of one family and functional unit: units differ across families",
            "summary: median of numeric attributes and most common value of others, front vs rest",
        ],
    )
