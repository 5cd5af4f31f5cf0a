"""One month's report, read from the ledger aggregates: the figures every form of the report
(e-mail, dashboard preview, PDF, API) shows, so they cannot disagree.

Totals come from TeamDay (the ledger's daily aggregate per team and site); breakdowns of jobs
come from JobFootprint of the jobs that started in the month (the dashboard's rule for a job's
month). Comparisons go through :mod:`accounting.domain.comparison`: a month to date is
compared day for day with the start of the earlier month, and an earlier month with little
data gives "no comparable data" rather than a percentage.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any

from django.db.models import Count, F, Q, Sum
from django.db.models.fields.json import KeyTextTransform

from accounting.domain.comparison import Comparison, compare, coverage, like_for_like_previous
from accounting.domain.errors import InputError
from accounting.models import (
    CarbonBudget,
    Job,
    JobAllocation,
    JobFootprint,
    JobHour,
    LedgerEntry,
    Organization,
    Team,
    TeamDay,
)
from accounting.selectors.access import SESSION_SCOPE, Principal, jobs_visible, teams_visible
from accounting.selectors.disclosure import Disclosure, disclosure_period
from accounting.selectors.job_filters import JobFilters

UTC = dt.UTC
ORG_SCOPE_LABEL = "Whole organisation"
TEAMS_SCOPE_LABEL = "All your teams"
OVERHEAD_LABEL = "Fleet overhead (unallocated)"
TOP_JOBS = 10
LEAST_EFFICIENT = 5
# A job-hour whose GPUs drew no more than this share above their idle baseline was held but not
# used: the consolidation recommendation's "idle allocation".
IDLE_ACTIVE_SHARE = 0.05
_SINGULAR = {"queries": "query", "samples": "sample", "steps": "step", "images": "image", "requests": "request"}
QUALITY_LABELS = ("measured", "integrated", "interpolated", "modelled")


@dataclass(frozen=True)
class Totals:
    energy_j: float
    gpu_idle_energy_j: float
    co2e_operational_g: float
    co2e_embodied_g: float
    co2e_upstream_g: float

    @property
    def co2e_g(self) -> float:
        return self.co2e_operational_g + self.co2e_embodied_g


@dataclass(frozen=True)
class ChangeVs:
    label: str  # "previous month", "same month last year"
    period_start: dt.date
    period_end: dt.date  # exclusive; like for like with a partial month
    co2e_g: float
    energy_j: float
    coverage: float
    change: Comparison


@dataclass(frozen=True)
class EnergySplit:
    """Energy of the month's jobs by where it was used (JobFootprint), joules."""

    gpu_active_j: float
    gpu_idle_j: float
    host_j: float
    facility_j: float


@dataclass(frozen=True)
class BreakdownRow:
    label: str
    jobs: int
    energy_j: float
    co2e_g: float
    # The fleet overhead this row receives under the organisation's declared policy (pro rata
    # by energy); 0 when the policy keeps the overhead separate. Never inside energy_j / co2e_g.
    overhead_energy_j: float = 0.0
    overhead_co2e_g: float = 0.0


@dataclass(frozen=True)
class SiteRow:
    site: str
    zone: str
    pue: float
    pue_source: str
    pue_version: int
    intensity_g_per_kwh: float | None  # effective: operational carbon / facility-inclusive energy
    energy_j: float
    co2e_operational_g: float
    co2e_embodied_g: float


@dataclass(frozen=True)
class JobLine:
    id: int
    scheduler_job_id: str
    name: str
    team: str
    status: str
    energy_j: float
    co2e_g: float
    co2e_per_unit_g: float | None = None
    primary_unit: str = ""

    @property
    def unit_label(self) -> str:
        """The unit the per-unit figure is shown in: 1k tokens (a gram per token is too small to
        read), else one sample, query, step..."""
        if self.primary_unit == "tokens":
            return "1k tokens"
        return _SINGULAR.get(self.primary_unit, self.primary_unit)

    @property
    def co2e_per_shown_unit_g(self) -> float | None:
        if self.co2e_per_unit_g is None:
            return None
        return self.co2e_per_unit_g * (1000.0 if self.primary_unit == "tokens" else 1.0)


@dataclass(frozen=True)
class BudgetLine:
    team: str
    budget_g: float
    used_g: float

    @property
    def used_share(self) -> float:
        return self.used_g / self.budget_g if self.budget_g > 0 else 0.0


@dataclass(frozen=True)
class Quality:
    """Data quality of the month's ledger: ``measured_share`` is the share of the month's
    jobs' GPU energy measured by the energy counter (JobFootprint); ``energy_shares`` splits
    ALL the period's energy (ledger entries: GPU, host, facility) into measured / integrated /
    interpolated / modelled: the measured part of each entry is measured, the rest takes the
    entry's worst window quality. ``co2e_low_g``/``co2e_high_g``: the band of the period's
    ledger entries (operational + embodied)."""

    measured_share: float | None
    co2e_low_g: float
    co2e_high_g: float
    energy_shares: tuple[tuple[str, float], ...] = ()


@dataclass(frozen=True)
class FactorUse:
    """One intensity source the period's ledger used, with its version(s), basis and gases,
    and the energy it was applied to."""

    source: str
    basis: str
    gases: str
    versions: tuple[str, ...]
    energy_j: float
    co2e_operational_g: float


@dataclass(frozen=True)
class IdleAllocations:
    """Job-hours whose held GPUs did (almost) nothing: device-hours held and the GPU energy
    they drew, by accelerator model key (for the consolidation recommendation)."""

    device_h: float
    gpu_energy_j: float
    by_model: tuple[tuple[str, float], ...]  # (hardware model key, device-hours)


@dataclass(frozen=True)
class MonthReport:
    org_id: int | None
    team_id: int | None
    scope_label: str
    month: dt.date  # first day
    period_end: dt.date  # exclusive: the month's end, or tomorrow for a month to date
    partial: bool
    as_of: dt.date
    totals: Totals
    overhead: Totals | None  # fleet overhead (team null), organisation roll-up only
    energy_split: EnergySplit
    vs_previous: ChangeVs
    vs_last_year: ChangeVs
    budgets: tuple[BudgetLine, ...]
    by_team: tuple[BreakdownRow, ...]
    by_family: tuple[BreakdownRow, ...]
    by_device_model: tuple[BreakdownRow, ...]
    by_site: tuple[SiteRow, ...]
    top_jobs: tuple[JobLine, ...]
    least_efficient: tuple[JobLine, ...]
    jobs_count: int
    lost_energy_j: float  # failed and preempted jobs
    lost_jobs: int
    idle_allocated_share: float | None  # GPU idle baseline / GPU energy of the month's jobs
    quality: Quality
    method_versions: tuple[str, ...]
    overhead_policy: str = "separate"  # the organisation's declared policy ("separate" | "pro_rata")
    # This team's share of the fleet overhead under a pro-rata policy (team report only).
    overhead_share: Totals | None = None
    factors: tuple[FactorUse, ...] = ()
    embodied_versions: tuple[str, ...] = ()
    idle_allocations: IdleAllocations | None = None
    disclosure: Disclosure | None = None

    @property
    def month_end(self) -> dt.date:
        return (self.month + dt.timedelta(days=32)).replace(day=1)


def _month_start(day: dt.date) -> dt.date:
    return day.replace(day=1)


def _next_month(day: dt.date) -> dt.date:
    return (day.replace(day=1) + dt.timedelta(days=32)).replace(day=1)


def _at(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time.min, tzinfo=UTC)


def _teamday(scope: Principal, team_id: int | None, start: dt.date, end: dt.date):  # type: ignore[no-untyped-def]
    qs = TeamDay.objects.filter(scope.rows_q(), day__gte=start, day__lt=end)
    if team_id is not None:
        qs = qs.filter(team_id=team_id)
    return qs


def _totals(qs) -> Totals:  # type: ignore[no-untyped-def]
    a = qs.aggregate(
        e=Sum("energy_j"),
        idle=Sum("gpu_idle_energy_j"),
        op=Sum("co2e_operational_g"),
        emb=Sum("co2e_embodied_g"),
        up=Sum("co2e_upstream_g"),
    )
    return Totals(
        energy_j=a["e"] or 0.0,
        gpu_idle_energy_j=a["idle"] or 0.0,
        co2e_operational_g=a["op"] or 0.0,
        co2e_embodied_g=a["emb"] or 0.0,
        co2e_upstream_g=a["up"] or 0.0,
    )


def _change(
    *,
    label: str,
    scope: Principal,
    team_id: int | None,
    current: Totals,
    start: dt.date,
    end: dt.date,
    prev_start: dt.date,
) -> ChangeVs:
    prev_end_full = _next_month(prev_start)
    p_start, p_end = like_for_like_previous(start, end, prev_start, prev_end_full)
    qs = _teamday(scope, team_id, p_start, p_end)
    prev = _totals(qs)
    days = qs.filter(energy_j__gt=0).values("day").distinct().count()
    cov = coverage(days, (p_end - p_start).days)
    return ChangeVs(
        label=label,
        period_start=p_start,
        period_end=p_end,
        co2e_g=prev.co2e_g,
        energy_j=prev.energy_j,
        coverage=cov,
        change=compare(current.co2e_g, prev.co2e_g, previous_coverage=cov),
    )


def _sees_whole_orgs(scope: Principal) -> bool:
    """An organisation admin, an admin or scheduler token, a superuser: the roll-up with the
    fleet-overhead account (the access rule's rows_q shows them the null-team rows)."""
    return scope.is_admin or (scope.via_token and scope.scope in ("admin", "scheduler"))


def _scope_label(scope: Principal, team_id: int | None) -> tuple[str, int | None]:
    if team_id is not None:
        team = teams_visible(principal=scope).filter(id=team_id).values("name", "org_id").first()
        if team is None:
            raise Team.DoesNotExist(f"team {team_id} is not visible")
        return team["name"], team["org_id"]
    org_id = scope.org_id
    if org_id is None and len(scope.admin_org_ids) == 1:
        (org_id,) = scope.admin_org_ids
    if not _sees_whole_orgs(scope):
        return TEAMS_SCOPE_LABEL, org_id
    return ORG_SCOPE_LABEL, org_id


def month_report(*, scope: Principal, month: dt.date, team_id: int | None, today: dt.date | None = None) -> MonthReport:
    """The report of ``month`` (any day of it) as ``scope`` may see it: one team's
    (``team_id``), or everything the scope sees (an admin: the organisation roll-up, with the
    fleet overhead). ``today`` (default: the UTC date) decides whether the month is partial."""
    today = today or dt.datetime.now(UTC).date()
    start = _month_start(month)
    if start > today:
        raise InputError("month", f"{start:%Y-%m} has not begun (today is {today.isoformat()})")
    full_end = _next_month(start)
    partial = today < full_end
    end = min(full_end, today + dt.timedelta(days=1)) if partial else full_end
    label, org_id = _scope_label(scope, team_id)
    cur_qs = _teamday(scope, team_id, start, end)
    totals = _totals(cur_qs)
    overhead = _totals(cur_qs.filter(team__isnull=True)) if team_id is None and _sees_whole_orgs(scope) else None
    vs_prev = _change(
        label="previous month",
        scope=scope,
        team_id=team_id,
        current=totals,
        start=start,
        end=end,
        prev_start=_month_start(start - dt.timedelta(days=1)),
    )
    vs_year = _change(
        label="same month last year",
        scope=scope,
        team_id=team_id,
        current=totals,
        start=start,
        end=end,
        prev_start=start.replace(year=start.year - 1),
    )

    policy = _overhead_policy(org_id)
    team_rows = list(
        cur_qs.values("team__name")
        .annotate(e=Sum("energy_j"), co2=Sum(F("co2e_operational_g") + F("co2e_embodied_g")))
        .order_by("-co2", "team__name")
    )
    team_energy_j = sum(r["e"] for r in team_rows if r["team__name"] is not None)
    by_team = tuple(
        BreakdownRow(
            label=r["team__name"] or OVERHEAD_LABEL,
            jobs=0,
            energy_j=r["e"],
            co2e_g=r["co2"],
            overhead_energy_j=_pro_rata(overhead.energy_j if overhead else 0.0, r["e"], team_energy_j)
            if policy == "pro_rata" and r["team__name"] is not None
            else 0.0,
            overhead_co2e_g=_pro_rata(overhead.co2e_g if overhead else 0.0, r["e"], team_energy_j)
            if policy == "pro_rata" and r["team__name"] is not None
            else 0.0,
        )
        for r in team_rows
    )
    overhead_share = None
    if team_id is not None and policy == "pro_rata" and org_id is not None:
        overhead_share = _team_overhead_share(org_id=org_id, team_energy_j=totals.energy_j, start=start, end=end)
    by_site = tuple(
        SiteRow(
            site=r["site__name"],
            zone=r["site__zone__code"],
            pue=r["site__pue"],
            pue_source=r["site__pue_source"],
            pue_version=r["site__pue_version"],
            intensity_g_per_kwh=(r["op"] / (r["e"] / 3.6e6)) if r["e"] else None,
            energy_j=r["e"],
            co2e_operational_g=r["op"],
            co2e_embodied_g=r["emb"],
        )
        for r in cur_qs.values("site__name", "site__zone__code", "site__pue", "site__pue_source", "site__pue_version")
        .annotate(e=Sum("energy_j"), op=Sum("co2e_operational_g"), emb=Sum("co2e_embodied_g"))
        .order_by("-e", "site__name")
    )

    jobs = jobs_visible(principal=scope).filter(started_at__gte=_at(start), started_at__lt=_at(end))
    if team_id is not None:
        jobs = jobs.filter(team_id=team_id)
    fp = JobFootprint.objects.filter(job__in=jobs.values("id"))
    agg = fp.aggregate(
        n=Count("job_id"),
        gpu=Sum("gpu_energy_j"),
        idle=Sum("gpu_idle_energy_j"),
        host=Sum("host_energy_j"),
        fac=Sum("facility_energy_j"),
        meas=Sum(F("measured_fraction") * F("gpu_energy_j")),
        lost=Sum("energy_j", filter=Q(job__status__in=(Job.Status.FAILED, Job.Status.PREEMPTED))),
        lost_n=Count("job_id", filter=Q(job__status__in=(Job.Status.FAILED, Job.Status.PREEMPTED))),
    )
    gpu_j, idle_j = agg["gpu"] or 0.0, agg["idle"] or 0.0
    split = EnergySplit(
        gpu_active_j=gpu_j - idle_j, gpu_idle_j=idle_j, host_j=agg["host"] or 0.0, facility_j=agg["fac"] or 0.0
    )
    fam_labels = dict(Job.Family.choices)
    by_family = tuple(
        BreakdownRow(
            label=str(fam_labels.get(r["job__family"], r["job__family"])), jobs=r["n"], energy_j=r["e"], co2e_g=r["co2"]
        )
        for r in fp.values("job__family")
        .annotate(n=Count("job_id"), e=Sum("energy_j"), co2=Sum(F("co2e_operational_g") + F("co2e_embodied_g")))
        .order_by("-co2", "job__family")
    )
    by_device = _by_device_model(fp)
    rows = list(
        fp.annotate(co2=F("co2e_operational_g") + F("co2e_embodied_g")).values(
            "job_id",
            "job__scheduler_job_id",
            "job__name",
            "job__team__name",
            "job__status",
            "energy_j",
            "co2",
            "job__units",
            "job__primary_unit",
        )
    )
    lines = [
        JobLine(
            id=r["job_id"],
            scheduler_job_id=r["job__scheduler_job_id"],
            name=r["job__name"],
            team=r["job__team__name"],
            status=r["job__status"],
            energy_j=r["energy_j"],
            co2e_g=r["co2"],
            co2e_per_unit_g=_per_unit(r["co2"], r["job__units"], r["job__primary_unit"]),
            primary_unit=r["job__primary_unit"],
        )
        for r in rows
    ]
    top = tuple(sorted(lines, key=lambda j: (-j.co2e_g, j.id))[:TOP_JOBS])
    least = _least_efficient(lines)
    budgets = _budgets(scope=scope, team_id=team_id, start=start, end=end)
    entries = LedgerEntry.objects.filter(scope.rows_q(), hour__gte=_at(start), hour__lt=_at(end))
    if team_id is not None:
        entries = entries.filter(team_id=team_id)
    shares, low_g, high_g = _energy_quality(entries)
    versions = tuple(sorted(v for v in entries.values_list("method_version", flat=True).distinct() if v))
    embodied_versions = tuple(
        sorted(
            v
            for v in entries.filter(held_s__gt=0)
            .annotate(v=KeyTextTransform("embodied", "factor_versions"))
            .values_list("v", flat=True)
            .distinct()
            if v
        )
    )
    return MonthReport(
        org_id=org_id,
        team_id=team_id,
        scope_label=label,
        month=start,
        period_end=end,
        partial=partial,
        as_of=min(today, full_end - dt.timedelta(days=1)),
        totals=totals,
        overhead=overhead,
        energy_split=split,
        vs_previous=vs_prev,
        vs_last_year=vs_year,
        budgets=budgets,
        by_team=by_team,
        by_family=by_family,
        by_device_model=by_device,
        by_site=by_site,
        top_jobs=top,
        least_efficient=least,
        jobs_count=agg["n"] or 0,
        lost_energy_j=agg["lost"] or 0.0,
        lost_jobs=agg["lost_n"] or 0,
        idle_allocated_share=(idle_j / gpu_j) if gpu_j > 0 else None,
        quality=Quality(
            measured_share=((agg["meas"] or 0.0) / gpu_j) if gpu_j > 0 else None,
            co2e_low_g=low_g,
            co2e_high_g=high_g,
            energy_shares=shares,
        ),
        method_versions=versions,
        overhead_policy=policy,
        overhead_share=overhead_share,
        factors=_factor_uses(entries),
        embodied_versions=embodied_versions,
        idle_allocations=_idle_allocations(jobs),
        disclosure=disclosure_period(scope=scope, start=start, end=end, team_id=team_id) if end > start else None,
    )


def _pro_rata(amount: float, part: float, whole: float) -> float:
    return amount * part / whole if whole > 0 else 0.0


def _overhead_policy(org_id: int | None) -> str:
    if org_id is None:
        return "separate"
    return Organization.objects.filter(pk=org_id).values_list("overhead_policy", flat=True).first() or "separate"


def _team_overhead_share(*, org_id: int, team_energy_j: float, start: dt.date, end: dt.date) -> Totals:
    """A team's pro-rata share of its organisation's fleet overhead: overhead x the team's
    energy / the energy of all the organisation's teams (aggregates only: no other team's rows
    or jobs are shown)."""
    org_days = TeamDay.objects.filter(org_id=org_id, day__gte=start, day__lt=end)
    overhead = _totals(org_days.filter(team__isnull=True))
    teams_j = _totals(org_days.filter(team__isnull=False)).energy_j
    return Totals(
        energy_j=_pro_rata(overhead.energy_j, team_energy_j, teams_j),
        gpu_idle_energy_j=_pro_rata(overhead.gpu_idle_energy_j, team_energy_j, teams_j),
        co2e_operational_g=_pro_rata(overhead.co2e_operational_g, team_energy_j, teams_j),
        co2e_embodied_g=_pro_rata(overhead.co2e_embodied_g, team_energy_j, teams_j),
        co2e_upstream_g=_pro_rata(overhead.co2e_upstream_g, team_energy_j, teams_j),
    )


def _least_efficient(lines: list[JobLine]) -> tuple[JobLine, ...]:
    """The jobs with the most carbon per functional unit, compared only with jobs of the same
    unit (a gram per token and a gram per query are not comparable): the worst of each unit
    first, then the rest, at most LEAST_EFFICIENT."""
    by_unit: dict[str, list[JobLine]] = {}
    for j in lines:
        if j.co2e_per_unit_g is not None:
            by_unit.setdefault(j.primary_unit, []).append(j)
    ranked = [sorted(js, key=lambda j: (-(j.co2e_per_unit_g or 0.0), j.id)) for _, js in sorted(by_unit.items())]
    out: list[JobLine] = []
    depth = 0
    while len(out) < LEAST_EFFICIENT and any(depth < len(r) for r in ranked):
        out.extend(r[depth] for r in ranked if depth < len(r))
        depth += 1
    return tuple(out[:LEAST_EFFICIENT])


def _energy_quality(entries) -> tuple[tuple[tuple[str, float], ...], float, float]:  # type: ignore[no-untyped-def]
    """Shares of the entries' energy by data quality, and their carbon band."""
    acc = dict.fromkeys(QUALITY_LABELS, 0.0)
    low = high = 0.0
    for quality, e, measured, lo, hi in (
        entries.values("quality")
        .annotate(e=Sum("energy_j"), m=Sum("measured_energy_j"), lo=Sum("co2e_low_g"), hi=Sum("co2e_high_g"))
        .values_list("quality", "e", "m", "lo", "hi")
    ):
        acc["measured"] += measured
        acc[quality if quality in acc else "modelled"] += e - measured
        low += lo
        high += hi
    total = sum(acc.values())
    if total <= 0:
        return (), low, high
    return tuple((q, acc[q] / total) for q in QUALITY_LABELS), low, high


def _factor_uses(entries) -> tuple[FactorUse, ...]:  # type: ignore[no-untyped-def]
    rows: dict[tuple[str, str, str], list[Any]] = {}
    for source, basis, gases, version, e, op in (
        entries.annotate(v=KeyTextTransform("intensity", "factor_versions"))
        .values("intensity_source", "intensity_basis", "intensity_gases", "v")
        .annotate(e=Sum("energy_j"), op=Sum("co2e_operational_g"))
        .values_list("intensity_source", "intensity_basis", "intensity_gases", "v", "e", "op")
    ):
        row = rows.setdefault((source, basis, gases), [set(), 0.0, 0.0])
        if version:
            row[0].add(str(version))
        row[1] += e
        row[2] += op
    return tuple(
        FactorUse(
            source=k[0],
            basis=k[1] or "not recorded",
            gases=k[2] or "not recorded",
            versions=tuple(sorted(v[0], key=lambda x: (len(x), x))),
            energy_j=v[1],
            co2e_operational_g=v[2],
        )
        for k, v in sorted(rows.items(), key=lambda kv: (-kv[1][1], kv[0]))
    )


def _idle_allocations(jobs) -> IdleAllocations:  # type: ignore[no-untyped-def]
    """Hours of the month's jobs in which their GPUs drew (almost) only the idle baseline."""
    idle = JobHour.objects.filter(
        job__in=jobs.values("id"),
        gpu_energy_j__gt=0,
        held_s__gt=0,
        gpu_energy_j__lte=F("gpu_idle_energy_j") * (1.0 + IDLE_ACTIVE_SHARE),
    )
    held_by_job = dict(idle.values("job_id").annotate(h=Sum("held_s")).values_list("job_id", "h"))
    agg = idle.aggregate(h=Sum("held_s"), e=Sum("gpu_energy_j"))
    models: dict[str, float] = {}
    for job_id, key in (
        JobAllocation.objects.filter(job_id__in=list(held_by_job))
        .values_list("job_id", "device__hardware_model__key")
        .distinct()
        .order_by("job_id", "device__hardware_model__key")
    ):
        if key and held_by_job[job_id] > 0:
            models[key] = models.get(key, 0.0) + held_by_job[job_id] / 3600.0
            held_by_job[job_id] = 0.0  # a job on several models counts once, on its first
    return IdleAllocations(
        device_h=(agg["h"] or 0.0) / 3600.0,
        gpu_energy_j=agg["e"] or 0.0,
        by_model=tuple(sorted(models.items(), key=lambda kv: (-kv[1], kv[0]))),
    )


def _by_device_model(fp) -> tuple[BreakdownRow, ...]:  # type: ignore[no-untyped-def]
    """Jobs by the accelerator models they held ("A + B" for a job on several), so each job's
    footprint is counted once and the rows sum to the month's job totals."""
    models: dict[int, set[str]] = {}
    for job_id, name in JobAllocation.objects.filter(job_id__in=fp.values("job_id")).values_list(
        "job_id", "device__hardware_model__name"
    ):
        models.setdefault(job_id, set()).add(name or "unknown model")
    acc: dict[str, list[float]] = {}
    for job_id, e, co2 in fp.annotate(co2=F("co2e_operational_g") + F("co2e_embodied_g")).values_list(
        "job_id", "energy_j", "co2"
    ):
        label = " + ".join(sorted(models.get(job_id, {"no allocation recorded"})))
        row = acc.setdefault(label, [0, 0.0, 0.0])
        row[0] += 1
        row[1] += e
        row[2] += co2
    return tuple(
        BreakdownRow(label=k, jobs=int(v[0]), energy_j=v[1], co2e_g=v[2])
        for k, v in sorted(acc.items(), key=lambda kv: (-kv[1][2], kv[0]))
    )


def _per_unit(co2e_g: float, units: dict[str, float] | None, primary: str) -> float | None:
    """Carbon per functional unit as the dashboard's job list computes it (grams per unit)."""
    count = (units or {}).get(primary) if primary else None
    return co2e_g / count if (count and co2e_g) else None


def _budgets(*, scope: Principal, team_id: int | None, start: dt.date, end: dt.date) -> tuple[BudgetLine, ...]:
    teams = teams_visible(principal=scope)
    if team_id is not None:
        teams = teams.filter(id=team_id)
    lines = []
    for b in (
        CarbonBudget.objects.filter(team__in=teams, period_start__lte=start, period_end__gt=start)
        .select_related("team")
        .order_by("team__name", "period_start")
    ):
        used = _totals(
            TeamDay.objects.filter(
                team_id=b.team_id, day__gte=max(b.period_start, start), day__lt=min(b.period_end, end)
            )
        ).co2e_g
        lines.append(BudgetLine(team=b.team.name, budget_g=b.co2e_budget_g, used_g=used))
    return tuple(lines)


def month_report_fingerprint(report: MonthReport) -> str:
    """A stable hash of the report's figures (not of when it was built): a recompute that
    changes a sent month's totals changes it, so delivery can say "revised after sending"."""
    figures = {
        "scope": [report.org_id, report.team_id, report.month.isoformat(), report.period_end.isoformat()],
        "totals": asdict(report.totals),
        "overhead": asdict(report.overhead) if report.overhead else None,
        "split": asdict(report.energy_split),
        "sites": [[s.site, s.energy_j, s.co2e_operational_g, s.co2e_embodied_g] for s in report.by_site],
        "teams": [[t.label, t.energy_j, t.co2e_g] for t in report.by_team],
        "jobs": report.jobs_count,
    }
    text = json.dumps(figures, sort_keys=True, separators=(",", ":"), default=lambda v: round(v, 6))
    text = json.dumps(json.loads(text, parse_float=lambda v: round(float(v), 6)), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def month_jobs_csv_rows(report: MonthReport, *, scope: Principal | None = None) -> Iterator[list[Any]]:
    """The month's jobs with the dashboard job export's columns (header first): the jobs that
    started in the report's period, of its team (or all the scope sees)."""
    from accounting.selectors.dashboard.jobs import job_export_rows

    principal = scope or _report_principal(report)
    filters = JobFilters(team_id=report.team_id, started_after=_at(report.month), started_before=_at(report.period_end))
    return job_export_rows(scope=principal, filters=filters)


def _report_principal(report: MonthReport) -> Principal:
    """A principal that sees exactly the report's scope: its team, or its organisation whole."""
    if report.team_id is not None:
        return Principal(scope=SESSION_SCOPE, team_ids=frozenset({report.team_id}))
    if report.org_id is None:
        raise ValueError("a report without an organisation needs the caller's scope")
    return Principal(scope=SESSION_SCOPE, admin_org_ids=frozenset({report.org_id}))
