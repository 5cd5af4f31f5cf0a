"""The trade-offs page: carbon per functional unit versus throughput or quality, with the
Pareto front."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from accounting.domain.pareto import pareto_front
from accounting.models import JobAllocation
from accounting.selectors.access import Principal
from accounting.selectors.dashboard.common import (
    Period,
    _jobs_scoped,
    _unit_scale,
)

# Quality metrics where a smaller value is better (the Pareto front flips for them).
LOWER_IS_BETTER_WORDS = ("latency", "loss", "perplexity", "error", "wer")


@dataclass(frozen=True)
class TradeoffPoint:
    job_id: int
    name: str
    x: float
    co2e_g_per_unit: float
    device: str
    zone: str
    team: str
    on_front: bool


@dataclass(frozen=True)
class Tradeoffs:
    family: str
    kind: str
    x_metric: str  # "throughput" | "quality"
    x_label: str
    unit: str
    quality_metric: str
    x_higher_is_better: bool
    total: int
    points: list[TradeoffPoint]
    front: list[TradeoffPoint]
    per_factor: float = 1.0  # carbon per unit is shown per this many units
    per_label: str = ""  # "1M tokens"


def _lower_is_better(metric: str) -> bool:
    metric = metric.lower()
    return any(word in metric for word in LOWER_IS_BETTER_WORDS)


def tradeoff_point_list(
    *,
    scope: Principal,
    period: Period,
    family: str,
    kind: str,
    x_metric: str = "throughput",
    team_id: int | None = None,
    max_points: int = 4000,
) -> Tradeoffs:
    """Carbon per functional unit versus throughput (units/s) or quality, for finished jobs of one
    family and kind started in the period, with the Pareto front over all of them."""
    jobs = (
        _jobs_scoped(scope=scope, team_id=team_id)
        .filter(
            family=family,
            kind=kind,
            started_at__gte=period.start_at,
            started_at__lt=period.end_at,
            ended_at__isnull=False,
            footprint__isnull=False,
        )
        .exclude(primary_unit="")
    )
    rows = list(
        jobs.values_list(
            "id",
            "name",
            "units",
            "primary_unit",
            "quality_metric",
            "quality_value",
            "started_at",
            "ended_at",
            "team__name",
            "cluster__site__zone__code",
            "footprint__co2e_operational_g",
            "footprint__co2e_embodied_g",
        )
    )
    unit_counts: dict[str, int] = defaultdict(int)
    for r in rows:
        unit_counts[r[3]] += 1
    unit = max(unit_counts, key=lambda u: unit_counts[u]) if unit_counts else ""
    metric_counts: dict[str, int] = defaultdict(int)
    for r in rows:
        if r[4] and r[5] is not None:
            metric_counts[r[4]] += 1
    quality_metric = max(metric_counts, key=lambda q: metric_counts[q]) if metric_counts else ""
    models: dict[int, str] = {}
    if rows:
        for job_id, name in (
            JobAllocation.objects.filter(job__in=jobs.values("id"))
            .order_by("job_id", "id")
            .distinct("job_id")
            .values_list("job_id", "device__hardware_model__name")
        ):
            models[job_id] = name or "Unknown model"
    raw: list[tuple] = []
    for jid, name, units, primary, qm, qv, started, ended, team, zone, op, emb in rows:
        count = (units or {}).get(unit) if primary == unit else None
        if not count or count <= 0:
            continue
        if ended is None:  # excluded by the query (ended_at__isnull=False)
            continue
        duration_s = (ended - started).total_seconds()
        if x_metric == "quality":
            if qm != quality_metric or qv is None:
                continue
            x = float(qv)
        else:
            if duration_s <= 0:
                continue
            x = count / duration_s
        raw.append((jid, name, x, (op + emb) / count, models.get(jid, "Unknown model"), zone, team))
    x_higher = not (x_metric == "quality" and _lower_is_better(quality_metric))
    front_idx = set(pareto_front([(r[2], r[3]) for r in raw], x_higher_is_better=x_higher))
    pts = [TradeoffPoint(r[0], r[1], r[2], r[3], r[4], r[5], r[6], i in front_idx) for i, r in enumerate(raw)]
    front = sorted((p for p in pts if p.on_front), key=lambda p: p.x)
    shown = pts
    if len(pts) > max_points:
        # Keep every front point and an evenly spaced, deterministic sample of the rest.
        rest = [p for p in pts if not p.on_front]
        step = len(rest) / max(max_points - len(front), 1)
        shown = front + [rest[int(i * step)] for i in range(max_points - len(front))]
    x_label = f"Throughput ({unit}/s)" if x_metric == "throughput" else (quality_metric or "Quality")
    ys = sorted(p.co2e_g_per_unit for p in pts)
    factor, prefix = _unit_scale(ys[len(ys) // 2]) if ys else (1.0, "")
    singular = unit[:-1] if (unit.endswith("s") and not prefix) else unit
    return Tradeoffs(
        family=family,
        kind=kind,
        x_metric=x_metric,
        x_label=x_label,
        unit=unit,
        quality_metric=quality_metric,
        x_higher_is_better=x_higher,
        total=len(pts),
        points=shown,
        front=front,
        per_factor=factor,
        per_label=f"{prefix}{singular}",
    )
