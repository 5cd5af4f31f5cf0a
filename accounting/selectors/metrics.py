"""What the Prometheus exposition (``/metrics``) reads: cumulative ledger totals from the
roll-ups, scoped by the caller's principal, in a few aggregate queries per scrape.

Sources, all maintained incrementally by ``services/rollup.py``:

* team totals from ``TeamDay`` (a team's, or the fleet overhead's, energy and carbon per site
  and day: the day rows of all time are the cheapest complete sum);
* GPU totals per cluster and device model from ``DeviceHour`` (organisation admins only);
* job totals from ``JobHour`` for jobs running now or ended within ``recent_s`` (the
  cardinality bound: a finished job's series stop after that), and for an inference service
  its server's last counter reading (``ServingCounters``: requests, input and output tokens);
* the ingest and attribution state for the data-quality board (organisation admins only).

Units are the ledger's: joules, grams CO2e, seconds.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Iterator
from dataclasses import dataclass, field

from django.conf import settings
from django.core.cache import cache
from django.db import connection
from django.db.models import Count, F, Q, Sum
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from accounting.models import Host, Job, TeamDay
from accounting.selectors.access import Principal
from telemetry.queue import batches_count

TEAM_LABELS = ["org", "site", "team", "account"]
GPU_LABELS = ["org", "site", "cluster", "device_model"]
JOB_LABELS = ["org", "site", "cluster", "team", "job_id", "device_model"]

# A job that ended keeps its series this long (seconds), so the last scrapes see its final
# totals; after that it leaves the exposition (the cardinality bound).
DEFAULT_RECENT_JOB_S = 3600.0
UNKNOWN_MODEL = "unknown"
# A job on devices of several models is labelled with their keys joined by this.
MODEL_SEPARATOR = "+"


@dataclass(frozen=True)
class TeamTotals:
    org: str
    site: str
    team: str  # "" for the fleet-overhead account (unallocated devices)
    energy_j: float
    gpu_idle_energy_j: float
    co2e_operational_g: float
    co2e_embodied_g: float


@dataclass(frozen=True)
class GpuTotals:
    org: str
    site: str
    cluster: str
    device_model: str
    energy_j: float
    idle_energy_j: float
    allocated_s: float
    observed_s: float
    co2e_operational_g: float
    co2e_embodied_g: float


@dataclass(frozen=True)
class JobTotals:
    org: str
    site: str
    cluster: str
    team: str
    job_id: str  # the scheduler's id (unique within the cluster)
    device_model: str
    running: bool
    energy_j: float
    gpu_idle_energy_j: float
    gpu_energy_j: float
    measured_gpu_energy_j: float
    co2e_operational_g: float
    co2e_embodied_g: float
    units: dict[str, float] = field(default_factory=dict)
    # An inference service's server counters as last scraped (None: no scrape recorded).
    served: ServedTotals | None = None


@dataclass(frozen=True)
class ServedTotals:
    """The last reading of a service's server counters (accounting.models.ServingCounters):
    the server's own totals, which restart from 0 when it restarts (a counter reset to
    Prometheus's rate() and increase(), the same rule as accounting.domain.serving)."""

    server: str
    requests_total: float
    input_tokens_total: float | None
    output_tokens_total: float | None


@dataclass(frozen=True)
class HostSeen:
    org: str
    site: str
    cluster: str
    host: str
    last_seen_at: dt.datetime


@dataclass(frozen=True)
class IngestState:
    last_received_at: dt.datetime | None
    pending: int
    claimed: int
    failed: int
    running_jobs: dict[str, int]  # per organisation slug
    hosts: list[HostSeen]


@dataclass(frozen=True)
class MetricsSnapshot:
    teams: list[TeamTotals]
    gpus: list[GpuTotals]
    jobs: list[JobTotals]
    ingest: IngestState | None  # None: the principal does not see whole organisations


def recent_job_s() -> float:
    """The setting ``CARBONLEDGER_METRICS_RECENT_JOB_S`` (default an hour)."""
    return float(getattr(settings, "CARBONLEDGER_METRICS_RECENT_JOB_S", DEFAULT_RECENT_JOB_S))


def _admin_orgs_q(principal: Principal, lookup: str) -> Q:
    if principal.is_superuser:
        return Q()
    return Q(**{f"{lookup}__in": sorted(principal.admin_org_ids)})


def team_totals(*, principal: Principal) -> list[TeamTotals]:
    rows = (
        TeamDay.objects.filter(principal.rows_q())
        .values("org__slug", "site__slug", "team__slug")
        .annotate(
            energy=Sum("energy_j"),
            idle=Sum("gpu_idle_energy_j"),
            operational=Sum("co2e_operational_g"),
            embodied=Sum("co2e_embodied_g"),
        )
        .order_by("org__slug", "site__slug", F("team__slug").asc(nulls_first=True))
    )
    return [
        TeamTotals(
            org=r["org__slug"],
            site=r["site__slug"],
            team=r["team__slug"] or "",
            energy_j=r["energy"] or 0.0,
            gpu_idle_energy_j=r["idle"] or 0.0,
            co2e_operational_g=r["operational"] or 0.0,
            co2e_embodied_g=r["embodied"] or 0.0,
        )
        for r in rows
    ]


# GPU totals by organisation, site, cluster and device model over [from, to): device-hours summed
# per device first (one pass over the BRIN-indexed hours), then grouped by what labels them.
_GPU_SQL = """
SELECT o.slug, s.slug, c.slug, hm.key, SUM(t.energy), SUM(t.idle), SUM(t.allocated), SUM(t.observed),
       SUM(t.operational), SUM(t.embodied)
FROM (
    SELECT h.device_id, SUM(h.energy_j) AS energy, SUM(h.idle_energy_j) AS idle, SUM(h.allocated_s) AS allocated,
           SUM(h.observed_s) AS observed, SUM(h.co2e_operational_g) AS operational,
           SUM(h.co2e_embodied_g) AS embodied
    FROM accounting_devicehour h
    WHERE h.hour >= %s AND h.hour < %s AND h.device_id IN (
        SELECT d.id FROM accounting_device d
        JOIN accounting_host ho ON ho.id = d.host_id
        JOIN accounting_cluster cl ON cl.id = ho.cluster_id
        JOIN accounting_site si ON si.id = cl.site_id
        WHERE {orgs})
    GROUP BY h.device_id
) t
JOIN accounting_device d ON d.id = t.device_id
JOIN accounting_host ho ON ho.id = d.host_id
JOIN accounting_cluster c ON c.id = ho.cluster_id
JOIN accounting_site s ON s.id = c.site_id
JOIN accounting_organization o ON o.id = s.org_id
LEFT JOIN accounting_hardwaremodel hm ON hm.id = d.hardware_model_id
GROUP BY o.slug, s.slug, c.slug, hm.key
"""
_GPU_KEY = tuple[str, str, str, str]
_GPU_SUMS = 6
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
# Device-hours before this many hours ago change only when a factor correction recomputes
# them: their sums are cached (CARBONLEDGER_METRICS_HISTORY_CACHE_S), the rest read live.
HISTORY_LAG_H = 48
DEFAULT_HISTORY_CACHE_S = 600.0


def _gpu_sums(*, principal: Principal, start: dt.datetime, end: dt.datetime) -> dict[_GPU_KEY, list[float]]:
    if principal.is_superuser:
        orgs, params = "TRUE", []
    else:
        orgs, params = "si.org_id = ANY(%s)", [sorted(principal.admin_org_ids)]
    with connection.cursor() as cursor:
        cursor.execute(_GPU_SQL.format(orgs=orgs), [start, end, *params])
        return {
            (org, site, cluster, model or UNKNOWN_MODEL): [float(v or 0.0) for v in sums]
            for org, site, cluster, model, *sums in cursor.fetchall()
        }


def gpu_history_key(*, principal: Principal, now: dt.datetime) -> tuple[str, dt.datetime]:
    """The cache key of the principal's cached GPU history at ``now``, and where that history ends."""
    cutoff = (now - dt.timedelta(hours=HISTORY_LAG_H)).astimezone(dt.UTC)
    cutoff = cutoff.replace(hour=0, minute=0, second=0, microsecond=0)
    scope = "all" if principal.is_superuser else ",".join(str(o) for o in sorted(principal.admin_org_ids))
    return f"carbonledger:metrics:gpu-history:{scope}:{cutoff:%Y%m%d}", cutoff


def gpu_totals(*, principal: Principal, now: dt.datetime) -> list[GpuTotals]:
    """All-time GPU totals: the device-hours older than ``HISTORY_LAG_H`` hours (to a whole day)
    from the cache, shared by every web replica and refreshed every few minutes (a correction of
    old hours shows after that), the recent ones from the table at every scrape."""
    if not principal.is_admin:
        return []
    key, cutoff = gpu_history_key(principal=principal, now=now)
    history = cache.get(key)
    if history is None:
        history = {"|".join(k): v for k, v in _gpu_sums(principal=principal, start=_EPOCH, end=cutoff).items()}
        ttl = float(getattr(settings, "CARBONLEDGER_METRICS_HISTORY_CACHE_S", DEFAULT_HISTORY_CACHE_S))
        cache.set(key, history, timeout=ttl)
    totals: dict[_GPU_KEY, list[float]] = {
        tuple(k.split("|", 3)): list(v)  # type: ignore[misc]
        for k, v in history.items()
    }
    far_future = now + dt.timedelta(days=3650)
    for k, sums in _gpu_sums(principal=principal, start=cutoff, end=far_future).items():
        base = totals.setdefault(k, [0.0] * _GPU_SUMS)
        for i, value in enumerate(sums):
            base[i] += value
    return [
        GpuTotals(
            org=org,
            site=site,
            cluster=cluster,
            device_model=model,
            energy_j=sums[0],
            idle_energy_j=sums[1],
            allocated_s=sums[2],
            observed_s=sums[3],
            co2e_operational_g=sums[4],
            co2e_embodied_g=sums[5],
        )
        for (org, site, cluster, model), sums in sorted(totals.items())
    ]


# One query: the visible jobs running or recently ended, their device models (from their
# allocations), the sums of their hours and, for a service, its server's last counter reading.
_JOBS_SQL = """
SELECT o.slug, s.slug, c.slug, t.slug, j.scheduler_job_id, j.status = 'running', j.units,
       (SELECT string_agg(DISTINCT hm.key, %s ORDER BY hm.key)
          FROM accounting_joballocation a
          JOIN accounting_device d ON d.id = a.device_id
          JOIN accounting_hardwaremodel hm ON hm.id = d.hardware_model_id
         WHERE a.job_id = j.id),
       COALESCE(SUM(h.energy_j), 0), COALESCE(SUM(h.gpu_idle_energy_j), 0), COALESCE(SUM(h.gpu_energy_j), 0),
       COALESCE(SUM(h.measured_gpu_energy_j), 0), COALESCE(SUM(h.co2e_operational_g), 0),
       COALESCE(SUM(h.co2e_embodied_g), 0),
       sc.server, sc.requests_total, sc.input_tokens_total, sc.output_tokens_total
FROM accounting_job j
JOIN accounting_organization o ON o.id = j.org_id
JOIN accounting_cluster c ON c.id = j.cluster_id
JOIN accounting_site s ON s.id = c.site_id
JOIN accounting_team t ON t.id = j.team_id
LEFT JOIN LATERAL (
    SELECT server, requests_total, input_tokens_total, output_tokens_total
    FROM accounting_servingcounters WHERE job_id = j.id AND j.kind = 'inference' ORDER BY at DESC LIMIT 1
) sc ON true
LEFT JOIN accounting_jobhour h ON h.job_id = j.id
WHERE (j.status = 'running' OR j.ended_at >= %s) AND {visible}
GROUP BY j.id, o.slug, s.slug, c.slug, t.slug, sc.server, sc.requests_total, sc.input_tokens_total,
         sc.output_tokens_total
ORDER BY o.slug, s.slug, c.slug, j.scheduler_job_id
"""


def job_totals(*, principal: Principal, now: dt.datetime, recent_s: float) -> list[JobTotals]:
    visible, params = principal.jobs_where_sql("j")
    with connection.cursor() as cursor:
        cursor.execute(
            _JOBS_SQL.format(visible=visible), [MODEL_SEPARATOR, now - dt.timedelta(seconds=recent_s), *params]
        )
        rows = cursor.fetchall()
    out = []
    for org, site, cluster, team, job_id, running, units, models, *sums, server, requests, inputs, outputs in rows:
        energy, idle, gpu, measured, operational, embodied = (float(v) for v in sums)
        served = (
            None
            if server is None
            else ServedTotals(
                server,
                float(requests),
                None if inputs is None else float(inputs),
                None if outputs is None else float(outputs),
            )
        )
        if isinstance(units, str):  # Django leaves jsonb undecoded on a raw cursor
            units = json.loads(units)
        numeric_units = {
            str(k): float(v)
            for k, v in (units or {}).items()
            if isinstance(v, int | float) and not isinstance(v, bool) and v >= 0
        }
        out.append(
            JobTotals(
                org=org,
                site=site,
                cluster=cluster,
                team=team,
                job_id=job_id,
                device_model=models or UNKNOWN_MODEL,
                running=running,
                energy_j=energy,
                gpu_idle_energy_j=idle,
                gpu_energy_j=gpu,
                measured_gpu_energy_j=measured,
                co2e_operational_g=operational,
                co2e_embodied_g=embodied,
                units=dict(sorted(numeric_units.items())),
                served=served,
            )
        )
    return out


def ingest_state(*, principal: Principal) -> IngestState | None:
    if not principal.is_admin:
        return None
    batches = batches_count(
        host_ids=None
        if principal.is_superuser
        else Host.objects.filter(_admin_orgs_q(principal, "cluster__site__org_id")).values("pk")
    )
    running = (
        Job.objects.filter(_admin_orgs_q(principal, "org_id"), status=Job.Status.RUNNING)
        .values(org_slug=F("org__slug"))
        .annotate(n=Count("pk"))
        .order_by("org_slug")
    )
    hosts = (
        Host.objects.filter(_admin_orgs_q(principal, "cluster__site__org_id"), stream__last_seen_at__isnull=False)
        .values_list(
            "cluster__site__org__slug", "cluster__site__slug", "cluster__slug", "hostname", "stream__last_seen_at"
        )
        .order_by("cluster__site__org__slug", "cluster__site__slug", "cluster__slug", "hostname")
    )
    return IngestState(
        last_received_at=batches.last_received_at,
        pending=batches.pending,
        claimed=batches.claimed,
        failed=batches.failed,
        running_jobs={r["org_slug"]: r["n"] for r in running},
        hosts=[
            HostSeen(org, site, cluster, host, seen) for org, site, cluster, host, seen in hosts if seen is not None
        ],
    )


def metrics_snapshot(*, principal: Principal, now: dt.datetime, recent_s: float) -> MetricsSnapshot:
    """Everything one scrape exposes, as the principal sees it."""
    return MetricsSnapshot(
        teams=team_totals(principal=principal),
        gpus=gpu_totals(principal=principal, now=now),
        jobs=job_totals(principal=principal, now=now, recent_s=recent_s),
        ingest=ingest_state(principal=principal),
    )


# --- the exposition's families (Prometheus /metrics and the OTLP export share them) -----------


def metric_families(snapshot: MetricsSnapshot, *, now_ts: float) -> Iterator[Metric]:
    """The families of one scrape, from what the principal sees (pure: no query here)."""
    energy = CounterMetricFamily(
        "carbonledger_energy_joules",
        "Attributed energy (IT + facility) by account: job (a team's jobs, GPU idle baseline excluded), "
        "idle_allocated (GPU idle baseline of devices a job held), fleet_overhead (unallocated devices, team '')",
        labels=TEAM_LABELS,
    )
    carbon = CounterMetricFamily(
        "carbonledger_co2e_grams",
        "Carbon (gCO2e) by account: job (a team's jobs, including their allocated idle), fleet_overhead; "
        "kind operational (Scope 2, location-based) or embodied",
        labels=[*TEAM_LABELS, "kind"],
    )
    for t in snapshot.teams:
        base = [t.org, t.site, t.team]
        if t.team:
            energy.add_metric([*base, "job"], t.energy_j - t.gpu_idle_energy_j)
            energy.add_metric([*base, "idle_allocated"], t.gpu_idle_energy_j)
            account = "job"
        else:
            energy.add_metric([*base, "fleet_overhead"], t.energy_j)
            account = "fleet_overhead"
        carbon.add_metric([*base, account, "operational"], t.co2e_operational_g)
        carbon.add_metric([*base, account, "embodied"], t.co2e_embodied_g)
    yield energy
    yield carbon

    if snapshot.ingest is not None:  # organisation admins: the fleet by device model
        gpu_energy = CounterMetricFamily(
            "carbonledger_gpu_energy_joules",
            "GPU energy by device model; state active or idle (idle baseline, allocated or not)",
            labels=[*GPU_LABELS, "state"],
        )
        gpu_carbon = CounterMetricFamily(
            "carbonledger_gpu_co2e_grams", "Carbon (gCO2e) of GPU energy and GPU embodied", labels=[*GPU_LABELS, "kind"]
        )
        allocated = CounterMetricFamily(
            "carbonledger_gpu_allocated_seconds", "Device-seconds GPUs were held by jobs", labels=GPU_LABELS
        )
        observed = CounterMetricFamily(
            "carbonledger_gpu_observed_seconds", "Device-seconds GPUs were observed by the agent", labels=GPU_LABELS
        )
        for g in snapshot.gpus:
            base = [g.org, g.site, g.cluster, g.device_model]
            gpu_energy.add_metric([*base, "active"], g.energy_j - g.idle_energy_j)
            gpu_energy.add_metric([*base, "idle"], g.idle_energy_j)
            gpu_carbon.add_metric([*base, "operational"], g.co2e_operational_g)
            gpu_carbon.add_metric([*base, "embodied"], g.co2e_embodied_g)
            allocated.add_metric(base, g.allocated_s)
            observed.add_metric(base, g.observed_s)
        yield from (gpu_energy, gpu_carbon, allocated, observed)

    job_energy = CounterMetricFamily(
        "carbonledger_job_energy_joules",
        "Energy of running and recently ended jobs by account: job (GPU idle baseline excluded) or idle_allocated",
        labels=[*JOB_LABELS, "account"],
    )
    job_carbon = CounterMetricFamily(
        "carbonledger_job_co2e_grams",
        "Carbon (gCO2e) of running and recently ended jobs; kind operational or embodied",
        labels=[*JOB_LABELS, "kind"],
    )
    job_gpu = CounterMetricFamily(
        "carbonledger_job_gpu_energy_joules",
        "GPU energy of running and recently ended jobs; quality measured (energy counter) or estimated "
        "(integrated, interpolated or modelled)",
        labels=[*JOB_LABELS, "quality"],
    )
    job_units = CounterMetricFamily(
        "carbonledger_job_functional_units",
        "Functional units a job reported (tokens, samples, queries, requests)",
        labels=[*JOB_LABELS, "unit"],
    )
    served_requests = CounterMetricFamily(
        "carbonledger_job_served_requests",
        "Requests an inference service's server counted (its own counter as last scraped; it restarts from 0 "
        "with the server)",
        labels=[*JOB_LABELS, "server"],
    )
    served_tokens = CounterMetricFamily(
        "carbonledger_job_served_tokens",
        "Tokens an inference service's server counted, direction input (prompt) or output (generated); its own "
        "counters as last scraped, restarting from 0 with the server",
        labels=[*JOB_LABELS, "server", "direction"],
    )
    job_running = GaugeMetricFamily(
        "carbonledger_job_running", "1 while the job runs, 0 once it ended", labels=JOB_LABELS
    )
    for j in snapshot.jobs:
        base = [j.org, j.site, j.cluster, j.team, j.job_id, j.device_model]
        job_energy.add_metric([*base, "job"], j.energy_j - j.gpu_idle_energy_j)
        job_energy.add_metric([*base, "idle_allocated"], j.gpu_idle_energy_j)
        job_carbon.add_metric([*base, "operational"], j.co2e_operational_g)
        job_carbon.add_metric([*base, "embodied"], j.co2e_embodied_g)
        job_gpu.add_metric([*base, "measured"], j.measured_gpu_energy_j)
        job_gpu.add_metric([*base, "estimated"], j.gpu_energy_j - j.measured_gpu_energy_j)
        for unit, value in j.units.items():
            job_units.add_metric([*base, unit], value)
        if j.served is not None:
            served_requests.add_metric([*base, j.served.server], j.served.requests_total)
            for direction, tokens in (("input", j.served.input_tokens_total), ("output", j.served.output_tokens_total)):
                if tokens is not None:  # Triton counts no tokens
                    served_tokens.add_metric([*base, j.served.server, direction], tokens)
        job_running.add_metric(base, 1.0 if j.running else 0.0)
    yield from (job_energy, job_carbon, job_gpu, job_units, served_requests, served_tokens, job_running)

    ingest = snapshot.ingest
    if ingest is None:
        return
    lag = GaugeMetricFamily(
        "carbonledger_ingest_lag_seconds", "Seconds since the newest telemetry batch was received (NaN when none yet)"
    )
    last = ingest.last_received_at
    lag.add_metric([], now_ts - last.timestamp() if last is not None else math.nan)
    yield lag
    queue = GaugeMetricFamily(
        "carbonledger_attribution_queue_batches", "Telemetry batches by attribution state", labels=["state"]
    )
    queue.add_metric(["pending"], ingest.pending)
    queue.add_metric(["claimed"], ingest.claimed)
    queue.add_metric(["failed"], ingest.failed)
    yield queue
    jobs = GaugeMetricFamily("carbonledger_jobs_running", "Jobs currently running", labels=["org"])
    for org, n in ingest.running_jobs.items():
        jobs.add_metric([org], n)
    yield jobs
    hosts = GaugeMetricFamily(
        "carbonledger_host_last_seen_timestamp_seconds",
        "End of the last telemetry window ingested from the host (Unix time)",
        labels=["org", "site", "cluster", "host"],
    )
    for h in ingest.hosts:
        hosts.add_metric([h.org, h.site, h.cluster, h.host], h.last_seen_at.timestamp())
    yield hosts
