"""Mappers: the one place ORM rows (and raw window rows) become domain dataclasses."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable
from dataclasses import dataclass

from django.db import connection
from django.db.models import Q

from accounting.domain.carbon import EmbodiedRate, embodied_rate_g_per_s
from accounting.domain.types import (
    Allocation,
    GpuWindowIn,
    HostWindowIn,
    MigInstanceSample,
    PreviousWindow,
    ProcessSample,
    Quality,
)
from accounting.models import Device, HardwareModel, Host, JobAllocation, Site
from accounting.selectors.factors import (
    EmbodiedTerms,
    embodied_for_hardware,
    embodied_for_host,
    host_component_models,
)

# Without a catalog entry the idle baseline is unknown; 0 W puts all energy in "active", which
# overstates nothing (total energy is unchanged) and is visible as a device with no model.
DEFAULT_IDLE_POWER_W = 0.0
# A device with no catalog model is charged no embodied carbon rather than a guess; the
# devices page flags "unknown model".
ZERO_RATE = EmbodiedRate(central_g_per_s=0.0, low_g_per_s=0.0, high_g_per_s=0.0, version=0)


@dataclass(frozen=True)
class GpuWindowRow:
    window: GpuWindowIn
    counter_mj: int | None


def _device_idle_power(device_ids: list[int]) -> dict[int, float]:
    rows = Device.objects.filter(pk__in=device_ids).values_list("pk", "hardware_model__idle_power_w")
    return {pk: (idle if idle is not None else DEFAULT_IDLE_POWER_W) for pk, idle in rows}


def job_keys(*, scheduler_job_id: str, sluids: Iterable[str] = ()) -> frozenset[str]:
    """Keys the agent may report for a job's processes (see telemetry/agent job mapping): by its
    scheduler id, and by each Slurm SLUID the prolog registered (Slurm 26.05 cgroup paths)."""
    keys = {f"slurm:{scheduler_job_id}", f"k8s:{scheduler_job_id}", f"env:{scheduler_job_id}"}
    keys.update(f"slurm:{sluid}" for sluid in sluids)
    return frozenset(keys)


def allocations_for(*, device_ids: list[int], start: dt.datetime, end: dt.datetime) -> list[Allocation]:
    rows = (
        JobAllocation.objects.filter(device_id__in=device_ids, start__lt=end)
        .filter(Q(end__isnull=True) | Q(end__gt=start))
        .values_list(
            "job_id", "device_id", "start", "end", "fraction", "mig_instance", "job__scheduler_job_id", "job__sluids"
        )
    )
    return [
        Allocation(
            job_id=job_id,
            device_id=device_id,
            start=a_start,
            end=a_end,
            fraction=fraction,
            job_keys=job_keys(scheduler_job_id=sched_id, sluids=sluids or ()),
            mig_instance=mig,
        )
        for job_id, device_id, a_start, a_end, fraction, mig, sched_id, sluids in rows
    ]


def _rate_g_per_s(kg: float, *, lifetime_years: float, expected_utilisation: float) -> float:
    return embodied_rate_g_per_s(
        embodied_kg=kg, lifetime_years=lifetime_years, expected_utilisation=expected_utilisation
    )


def embodied_rates_for(*, device_ids: list[int], site: Site) -> dict[int, EmbodiedRate]:
    """Embodied g per held device-second: the device's own amortisation plus its slot share of
    the host's components (CPU, DRAM, SSD, chassis), each with its own lifetime policy.

    Hot path of attribution (hundreds of devices per call): devices are read as plain values and
    their hardware models and hosts once each, and the terms are computed once per distinct
    (model, site, lifetime override), instead of one joined model instance per device."""
    devices = list(
        Device.objects.filter(pk__in=device_ids).values_list("pk", "hardware_model_id", "lifetime_years", "host_id")
    )
    hardware = HardwareModel.objects.in_bulk({hw_id for _, hw_id, _, _ in devices if hw_id is not None})
    hosts = Host.objects.select_related("cluster__site").in_bulk({host_id for *_, host_id in devices})
    components = host_component_models(hosts.values())
    host_rates: dict[int, tuple[float, float, float, int]] = {}
    device_terms: dict[tuple[int, int, float | None], EmbodiedTerms] = {}
    rates: dict[int, EmbodiedRate] = {}
    for device_id, hw_id, lifetime_years, host_id in devices:
        if hw_id is None:
            rates[device_id] = ZERO_RATE
            continue
        host = hosts[host_id]
        host_site = host.cluster.site
        key = (hw_id, host_site.pk, lifetime_years)
        terms = device_terms.get(key)
        if terms is None:
            terms = device_terms[key] = embodied_for_hardware(
                hardware=hardware[hw_id], site=host_site, device_lifetime_years=lifetime_years
            )
        if host_id not in host_rates:
            slots = max(host.gpu_slots, 1)
            parts = embodied_for_host(host=host, components=components)
            host_rates[host_id] = (
                sum(
                    _rate_g_per_s(
                        t.embodied_kg, lifetime_years=t.lifetime_years, expected_utilisation=t.expected_utilisation
                    )
                    for t in parts
                )
                / slots,
                sum(
                    _rate_g_per_s(
                        t.low_kg, lifetime_years=t.lifetime_years, expected_utilisation=t.expected_utilisation
                    )
                    for t in parts
                )
                / slots,
                sum(
                    _rate_g_per_s(
                        t.high_kg, lifetime_years=t.lifetime_years, expected_utilisation=t.expected_utilisation
                    )
                    for t in parts
                )
                / slots,
                max((t.version for t in parts), default=0),
            )
        host_c, host_l, host_h, host_version = host_rates[host_id]
        policy = {"lifetime_years": terms.lifetime_years, "expected_utilisation": terms.expected_utilisation}
        rates[device_id] = EmbodiedRate(
            central_g_per_s=_rate_g_per_s(terms.embodied_kg, **policy) + host_c,
            low_g_per_s=_rate_g_per_s(terms.low_kg, **policy) + host_l,
            high_g_per_s=_rate_g_per_s(terms.high_kg, **policy) + host_h,
            version=max(terms.version, host_version),
        )
    return rates


# --- many batches at once (the attribution hot path) ----------------------------------------
# One query per kind of row for all batches a worker claimed, instead of one per batch.
# Timestamps are read as integer epoch microseconds (exact) and turned into datetimes through a
# small cache: a window's start/end repeat for every GPU of the host, and Django's Python-level
# timestamptz loader is the single largest cost of reading raw windows otherwise.

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_US = "(EXTRACT(EPOCH FROM {col}) * 1000000)::bigint"


def _stamp(cache: dict[int, dt.datetime], micros: int) -> dt.datetime:
    value = cache.get(micros)
    if value is None:
        value = cache[micros] = _EPOCH + dt.timedelta(microseconds=micros)
    return value


def _mig_samples(cache: dict[str, tuple[MigInstanceSample, ...]], text: str) -> tuple[MigInstanceSample, ...]:
    """A stored MIG instance list (telemetry.parsing._mig_instances) as domain samples, memoised.

    An instance without a known size cannot be weighed by activity x slices: it counts as one
    slice with no activity, so the window is split by slice fraction and flagged."""
    samples = []
    for position, inst in enumerate(json.loads(text) or []):
        slices = inst.get("slices")
        gpu_instance_id = inst.get("gpu_instance_id")
        samples.append(
            MigInstanceSample(
                gpu_instance_id=position if gpu_instance_id is None else gpu_instance_id,
                compute_instance_id=inst.get("compute_instance_id"),
                slices=slices or 1,
                activity=inst.get("activity") if slices else None,
                job_keys=frozenset(inst.get("job_keys") or ()),
            )
        )
    value = cache[text] = tuple(samples)
    return value


def _runs_at(runs: list[list], n: int) -> list[str]:
    """A stored run-length list (``telemetry.models.GpuSeries.processes``) as one JSON text per
    window (runs are few; each distinct text is decoded once by the caller's cache)."""
    out = ["[]"] * n
    for position, (first, value) in enumerate(runs):
        end = runs[position + 1][0] if position + 1 < len(runs) else n
        text = json.dumps(value)
        out[first:end] = [text] * (end - first)
    return out


def gpu_windows_for_batches(*, batch_pks: list[int]) -> dict[int, list[GpuWindowRow]]:
    """Each batch's GPU windows, read for many batches in one query of their series (ordered by
    device, start)."""
    out: dict[int, list[GpuWindowRow]] = {pk: [] for pk in batch_pks}
    if not batch_pks:
        return out
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT batch_id, device_id, window_count, seq, start_us, end_us, energy_j, avg_power_w, util_pct, "
            "quality, processes::text, counter_mj, mig_instances::text, energy_covers "
            "FROM telemetry_gpuseries WHERE batch_id = ANY(%s) ORDER BY batch_id, device_id, first_start_at",
            [list(batch_pks)],
        )
        raw = cursor.fetchall()
    idle = _device_idle_power(sorted({r[1] for r in raw}))
    stamps: dict[int, dt.datetime] = {}
    procs_cache: dict[str, tuple[ProcessSample, ...]] = {}
    mig_cache: dict[str, tuple[MigInstanceSample, ...]] = {"[]": ()}
    qualities = {q.value: q for q in Quality}
    for (
        batch_id,
        device_id,
        n,
        seqs,
        starts_us,
        ends_us,
        energies_j,
        powers_w,
        utils_pct,
        quality_names,
        processes_runs,
        counters_mj,
        mig_runs,
        energy_covers,
    ) in raw:
        idle_power_w = idle.get(device_id, DEFAULT_IDLE_POWER_W)
        processes_at = ["[]"] * n if processes_runs == "[]" else _runs_at(json.loads(processes_runs), n)
        mig_at = ["[]"] * n if mig_runs == "[]" else _runs_at(json.loads(mig_runs), n)
        counters = counters_mj if counters_mj is not None else [None] * n
        target = out[batch_id]
        for i in range(n):
            processes = processes_at[i]
            samples = procs_cache.get(processes)
            if samples is None:
                samples = procs_cache[processes] = tuple(
                    # Unknown per-process utilisation counts as 0: with no usable samples the domain
                    # splits active energy by allocation share instead.
                    ProcessSample(pid=p["pid"], sm_util_pct=p["sm_util_pct"] or 0.0, job_key=p.get("job_key"))
                    for p in json.loads(processes) or []
                )
            mig_instances = mig_at[i]
            quality = quality_names[i]
            target.append(
                GpuWindowRow(
                    window=GpuWindowIn(
                        device_id=device_id,
                        seq=seqs[i],
                        start=_stamp(stamps, starts_us[i]),
                        end=_stamp(stamps, ends_us[i]),
                        energy_j=energies_j[i],
                        avg_power_w=powers_w[i],
                        util_pct=utils_pct[i],
                        quality=qualities.get(quality) or Quality(quality),
                        idle_power_w=idle_power_w,
                        processes=samples,
                        mig_instances=(
                            mig_cache[mig_instances]
                            if mig_instances in mig_cache
                            else _mig_samples(mig_cache, mig_instances)
                        ),
                        energy_covers=energy_covers,
                    ),
                    counter_mj=counters[i],
                )
            )
    return out


def host_windows_for_batches(*, batch_pks: list[int]) -> dict[int, list[HostWindowIn]]:
    out: dict[int, list[HostWindowIn]] = {pk: [] for pk in batch_pks}
    if not batch_pks:
        return out
    stamps: dict[int, dt.datetime] = {}
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT batch_id, seq, {_US.format(col='start_at')}, {_US.format(col='end_at')}, cpu_energy_j, "
            "dram_energy_j, wall_energy_j, quality "
            "FROM telemetry_hostwindow WHERE batch_id = ANY(%s) ORDER BY batch_id, start_at",
            [list(batch_pks)],
        )
        for batch_id, seq, start_us, end_us, cpu, dram, wall, quality in cursor.fetchall():
            out[batch_id].append(
                HostWindowIn(
                    seq=seq,
                    start=_stamp(stamps, start_us),
                    end=_stamp(stamps, end_us),
                    cpu_energy_j=cpu,
                    dram_energy_j=dram,
                    wall_energy_j=wall,
                    quality=Quality(quality),
                )
            )
    return out


_DAY_BEFORE_B = "(b - interval '1 day')"


def previous_windows_for_many(
    *, requests: list[tuple[int, list[int], dt.datetime]]
) -> dict[int, dict[int, PreviousWindow]]:
    """Each device's last stored window ending at or before ``before``, for many (key, device_ids,
    before) requests in one query (looked up within a day: partition pruning keeps it cheap, and an
    older neighbour is a long gap anyway).

    A device's series never overlap in time (ingest refuses a batch starting before the host's
    last window ends), so the window sought lies in one of its two latest series starting before
    ``before``: only those are unnested."""
    out: dict[int, dict[int, PreviousWindow]] = {key: {} for key, _, _ in requests}
    keys, devices, befores, day_starts = [], [], [], []
    for key, device_ids, before in requests:
        # The series holding windows that start from before - 1 day start on or after that day's midnight.
        day_start = (
            (before - dt.timedelta(days=1)).astimezone(dt.UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        )
        for device_id in device_ids:
            keys.append(key)
            devices.append(device_id)
            befores.append(before)
            day_starts.append(day_start)
    if not keys:
        return out
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT r.k, r.d, p.end_us, p.avg_power_w, p.counter_mj, p.util_pct "
            "FROM (SELECT k, d, b, day_start, "
            f"  {_US.format(col='b')} AS b_us, {_US.format(col=_DAY_BEFORE_B)} AS lo_us "
            "  FROM unnest(%s::bigint[], %s::bigint[], %s::timestamptz[], %s::timestamptz[])"
            "  AS u(k, d, b, day_start)) r "
            "CROSS JOIN LATERAL (SELECT w.end_us, w.avg_power_w, w.counter_mj, w.util_pct "
            "  FROM (SELECT s.* FROM telemetry_gpuseries s WHERE s.device_id = r.d AND s.first_start_at < r.b "
            "        AND s.first_start_at >= r.day_start ORDER BY s.first_start_at DESC LIMIT 2) s "
            "  CROSS JOIN LATERAL unnest(s.start_us, s.end_us, s.avg_power_w, s.counter_mj, s.util_pct) "
            "    AS w(start_us, end_us, avg_power_w, counter_mj, util_pct) "
            "  WHERE w.start_us < r.b_us AND w.start_us >= r.lo_us AND w.end_us <= r.b_us "
            "  ORDER BY w.start_us DESC LIMIT 1) p",
            [keys, devices, befores, day_starts],
        )
        stamps: dict[int, dt.datetime] = {}
        for key, device_id, end_us, power, counter, util in cursor.fetchall():
            out[key][device_id] = PreviousWindow(
                end=_stamp(stamps, end_us), avg_power_w=power, counter_mj=counter, util_pct=util
            )
    return out


def allocations_within(
    allocations: list[Allocation], *, device_ids: set[int], start: dt.datetime, end: dt.datetime
) -> list[Allocation]:
    return [a for a in allocations if a.device_id in device_ids and a.start < end and (a.end is None or a.end > start)]
