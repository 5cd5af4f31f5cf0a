"""Mappers: the one place ORM rows (and raw window rows) become domain dataclasses."""

from __future__ import annotations

import datetime as dt
import itertools
import json
import operator
from collections.abc import Iterable
from dataclasses import dataclass

from django.db.models import Q

from accounting.domain.attribution.columnar import GpuColumns
from accounting.domain.carbon import EmbodiedRate, embodied_rate_g_per_s
from accounting.domain.timebase import from_us
from accounting.domain.types import (
    QUALITY_RANK,
    Allocation,
    GpuWindowIn,
    HostWindowIn,
    MigInstanceSample,
    PreviousWindow,
    ProcessSample,
    Quality,
)
from accounting.models import HardwareModel, Site
from accounting.selectors.attribution_inputs import allocation_rows, device_rows
from accounting.selectors.factors import (
    EMBODIED_FIELDS,
    EmbodiedTerms,
    component_quantities,
    embodied_for_components,
    embodied_for_hardware,
)
from telemetry import readers

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
    return {
        row.device_id: (row.idle_power_w if row.idle_power_w is not None else DEFAULT_IDLE_POWER_W)
        for row in device_rows(device_ids=device_ids)
    }


def job_keys(*, scheduler_job_id: str, sluids: Iterable[str] = ()) -> frozenset[str]:
    """Keys the agent may report for a job's processes (see telemetry/agent job mapping): by its
    scheduler id, and by each Slurm SLUID the prolog registered (Slurm 26.05 cgroup paths)."""
    keys = {f"slurm:{scheduler_job_id}", f"k8s:{scheduler_job_id}", f"env:{scheduler_job_id}"}
    keys.update(f"slurm:{sluid}" for sluid in sluids)
    return frozenset(keys)


def allocations_for(*, device_ids: list[int], start: dt.datetime, end: dt.datetime) -> list[Allocation]:
    keys: dict[tuple[str, str], frozenset[str]] = {}  # one key set per job
    out = []
    for row in allocation_rows(device_ids=device_ids, start=start, end=end):
        job = (row.scheduler_job_id, row.sluids_json)
        found = keys.get(job)
        if found is None:
            sluids = json.loads(row.sluids_json) or ()
            found = keys[job] = job_keys(scheduler_job_id=row.scheduler_job_id, sluids=sluids)
        out.append(
            Allocation(
                job_id=row.job_id,
                device_id=row.device_id,
                start=row.start,
                end=row.end,
                fraction=row.fraction,
                job_keys=found,
                mig_instance=row.mig_instance,
            )
        )
    return out


def _rate_g_per_s(kg: float, *, lifetime_years: float, expected_utilisation: float) -> float:
    return embodied_rate_g_per_s(
        embodied_kg=kg, lifetime_years=lifetime_years, expected_utilisation=expected_utilisation
    )


def embodied_rates_for(*, device_ids: list[int], site: Site) -> dict[int, EmbodiedRate]:
    """Embodied g per held device-second: the device's own amortisation plus its slot share of
    the host's components (CPU, DRAM, SSD, chassis), each with its own lifetime policy.

    Hot path of attribution (hundreds of devices per call, once per site and claim): two
    queries of plain values (the devices with their hosts' component figures, then the catalog
    rows they name), and each rate computed once per distinct (model, lifetime override, host
    figures, site): the devices of a fleet of like servers share a handful of rates."""
    rows = device_rows(device_ids=device_ids)
    rates = {row.device_id: ZERO_RATE for row in rows}  # no catalog model: none charged
    # (model, row) of the devices with a catalog model
    devices = [(row.hardware_model_id, row) for row in rows if row.hardware_model_id is not None]
    if not devices:
        return rates
    quantities: dict[tuple[str, float, float], dict[str, float]] = {}
    for _, row in devices:
        figures = (row.cpu_model, row.dram_gb, row.ssd_gb)
        if figures not in quantities:
            quantities[figures] = component_quantities(cpu_model=row.cpu_model, dram_gb=row.dram_gb, ssd_gb=row.ssd_gb)
    component_keys = {key for q in quantities.values() for key in q}
    catalog = list(
        HardwareModel.objects.filter(Q(pk__in={hw_id for hw_id, _ in devices}) | Q(key__in=component_keys)).only(
            *EMBODIED_FIELDS
        )
    )
    hardware = {model.pk: model for model in catalog}
    components = {model.key: model for model in catalog if model.key in component_keys}
    sites = {site.pk: site}
    other_sites = {row.site_id for _, row in devices} - {site.pk}
    if other_sites:  # a device whose host moved to another site's cluster: that site's overrides
        sites.update(Site.objects.only("hardware_overrides").in_bulk(other_sites))
    host_rates: dict[tuple, tuple[float, float, float, int]] = {}
    device_terms: dict[tuple[int, int, float | None], EmbodiedTerms] = {}
    shared: dict[tuple, EmbodiedRate] = {}
    for hw_id, row in devices:
        host_key = (row.site_id, row.gpu_slots, row.cpu_model, row.dram_gb, row.ssd_gb)
        rate_key = (hw_id, row.lifetime_years, host_key)
        rate = shared.get(rate_key)
        if rate is None:
            host_site = sites[row.site_id]
            terms_key = (hw_id, row.site_id, row.lifetime_years)
            terms = device_terms.get(terms_key)
            if terms is None:
                terms = device_terms[terms_key] = embodied_for_hardware(
                    hardware=hardware[hw_id], site=host_site, device_lifetime_years=row.lifetime_years
                )
            host_rate = host_rates.get(host_key)
            if host_rate is None:
                parts = embodied_for_components(
                    quantities=quantities[(row.cpu_model, row.dram_gb, row.ssd_gb)],
                    site=host_site,
                    components=components,
                )
                host_rate = host_rates[host_key] = _host_rate(parts, slots=max(row.gpu_slots, 1))
            host_c, host_l, host_h, host_version = host_rate
            policy = {"lifetime_years": terms.lifetime_years, "expected_utilisation": terms.expected_utilisation}
            rate = shared[rate_key] = EmbodiedRate(
                central_g_per_s=_rate_g_per_s(terms.embodied_kg, **policy) + host_c,
                low_g_per_s=_rate_g_per_s(terms.low_kg, **policy) + host_l,
                high_g_per_s=_rate_g_per_s(terms.high_kg, **policy) + host_h,
                version=max(terms.version, host_version),
            )
        rates[row.device_id] = rate
    return rates


def _host_rate(parts: list[EmbodiedTerms], *, slots: int) -> tuple[float, float, float, int]:
    """A device's slot share of its host's components: central, low and high g per second,
    and the newest catalog version among them."""

    def per_slot(kg_of) -> float:
        return (
            sum(
                _rate_g_per_s(kg_of(t), lifetime_years=t.lifetime_years, expected_utilisation=t.expected_utilisation)
                for t in parts
            )
            / slots
        )

    return (
        per_slot(operator.attrgetter("embodied_kg")),
        per_slot(operator.attrgetter("low_kg")),
        per_slot(operator.attrgetter("high_kg")),
        max((t.version for t in parts), default=0),
    )


# --- many batches at once (the attribution hot path) ----------------------------------------
# One query per kind of row for all batches a worker claimed (telemetry.readers), instead of one
# per batch. GPU windows stay arrays (``GpuColumns``): no Python object per window unless a
# device's windows need gap filling (``DeviceSeries.rows``).

_QUALITY_RANK_BY_NAME = {quality.value: rank for quality, rank in QUALITY_RANK.items()}


@dataclass(frozen=True, eq=False)
class DeviceSeries:
    """One device's windows of one batch (all its stored series, in order) and their NVML counters."""

    columns: GpuColumns
    counter_mj: list[int | None]

    def rows(self) -> list[GpuWindowRow]:
        """The windows one by one, with their counters (the form gap filling takes)."""
        return [
            GpuWindowRow(window=window, counter_mj=counter)
            for window, counter in zip(self.columns.windows(), self.counter_mj, strict=True)
        ]


def _stamp(cache: dict[int, dt.datetime], micros: int) -> dt.datetime:
    value = cache.get(micros)
    if value is None:
        value = cache[micros] = from_us(micros)
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


def _process_samples(cache: dict[str, tuple[ProcessSample, ...]], text: str) -> tuple[ProcessSample, ...]:
    """A stored process list as domain samples, memoised. Unknown per-process utilisation counts
    as 0: with no usable samples the domain splits active energy by allocation share instead."""
    value = cache[text] = tuple(
        ProcessSample(pid=p["pid"], sm_util_pct=float(p["sm_util_pct"] or 0.0), job_key=p.get("job_key"))
        for p in json.loads(text) or []
    )
    return value


def _run_starts(text: str, offset: int) -> list[tuple[int, str]]:
    """A stored run-length list (``GpuSeries.processes``) as (first window index + offset, the
    run's value as JSON text)."""
    if text == "[]":
        return [(offset, "[]")]
    runs = [(offset + first, json.dumps(value)) for first, value in json.loads(text)]
    if runs[0][0] > offset:  # windows before the first run reported nothing
        runs.insert(0, (offset, "[]"))
    return runs


class _Samples:
    """Caches of decoded process and MIG instance lists: one tuple per distinct list, shared by
    every window and batch that reported it (the domain caches its weights by identity)."""

    def __init__(self) -> None:
        self.processes: dict[str, tuple[ProcessSample, ...]] = {"[]": ()}
        self.mig: dict[str, tuple[MigInstanceSample, ...]] = {"[]": ()}

    def runs(
        self, processes_runs: list[tuple[int, str]], mig_runs: list[tuple[int, str]]
    ) -> tuple[tuple[int, tuple[ProcessSample, ...], tuple[MigInstanceSample, ...]], ...]:
        """Merge the processes' and the MIG instances' runs into runs of both."""
        firsts = sorted({first for first, _ in processes_runs} | {first for first, _ in mig_runs})
        out: list[tuple[int, tuple[ProcessSample, ...], tuple[MigInstanceSample, ...]]] = []
        p = m = 0
        for first in firsts:
            while p + 1 < len(processes_runs) and processes_runs[p + 1][0] <= first:
                p += 1
            while m + 1 < len(mig_runs) and mig_runs[m + 1][0] <= first:
                m += 1
            p_text, m_text = processes_runs[p][1], mig_runs[m][1]
            processes = self.processes.get(p_text)
            if processes is None:
                processes = _process_samples(self.processes, p_text)
            mig = self.mig.get(m_text)
            if mig is None:
                mig = _mig_samples(self.mig, m_text)
            if out and out[-1][1] is processes and out[-1][2] is mig:
                continue  # the same lists again (two day-series of one batch): one run
            out.append((first, processes, mig))
        return tuple(out)


def gpu_series_for_batches(*, batch_pks: list[int]) -> dict[int, list[DeviceSeries]]:
    """Each batch's GPU windows, one ``DeviceSeries`` per device (ordered by device id), read for
    many batches in one query of their stored series."""
    out: dict[int, list[DeviceSeries]] = {pk: [] for pk in batch_pks}
    stored = readers.gpu_series_for_batches(batch_pks=batch_pks)
    if not stored:
        return out
    idle = _device_idle_power(sorted({s.device_id for s in stored}))
    samples = _Samples()
    for (batch_id, device_id), group in itertools.groupby(stored, key=lambda s: (s.batch_id, s.device_id)):
        parts = list(group)
        processes_runs: list[tuple[int, str]] = []
        mig_runs: list[tuple[int, str]] = []
        counters: list[int | None] = []
        offset = 0
        for part in parts:
            processes_runs += _run_starts(part.processes_runs, offset)
            mig_runs += _run_starts(part.mig_runs, offset)
            counters += part.counter_mj if part.counter_mj is not None else [None] * len(part)
            offset += len(part)
        quality = [q for part in parts for q in part.quality]
        first_quality = quality[0]
        if quality.count(first_quality) == len(quality):
            ranks = [_QUALITY_RANK_BY_NAME[first_quality]] * len(quality)
        else:
            ranks = [_QUALITY_RANK_BY_NAME[q] for q in quality]

        first = parts[0]
        if len(parts) == 1:  # the usual case: the stored arrays as they are
            seq, start_us, end_us = first.seq, first.start_us, first.end_us
            energy_j, avg_power_w, util_pct = first.energy_j, first.avg_power_w, first.util_pct
        else:  # a batch across midnight: one series per day, joined
            seq, start_us, end_us, energy_j, avg_power_w, util_pct = (
                [x for part in parts for x in getattr(part, name)]
                for name in ("seq", "start_us", "end_us", "energy_j", "avg_power_w", "util_pct")
            )
        out[batch_id].append(
            DeviceSeries(
                columns=GpuColumns(
                    device_id=device_id,
                    seq=seq,
                    start_us=start_us,
                    end_us=end_us,
                    energy_j=energy_j,
                    avg_power_w=avg_power_w,
                    util_pct=util_pct,
                    quality_rank=ranks,
                    idle_power_w=idle.get(device_id, DEFAULT_IDLE_POWER_W),
                    runs=samples.runs(processes_runs, mig_runs),
                    energy_covers=first.energy_covers,
                ),
                counter_mj=counters,
            )
        )
    return out


def host_windows_for_batches(*, batch_pks: list[int]) -> dict[int, list[HostWindowIn]]:
    out: dict[int, list[HostWindowIn]] = {pk: [] for pk in batch_pks}
    stamps: dict[int, dt.datetime] = {}
    for w in readers.host_windows_for_batches(batch_pks=batch_pks):
        out[w.batch_id].append(
            HostWindowIn(
                seq=w.seq,
                start=_stamp(stamps, w.start_us),
                end=_stamp(stamps, w.end_us),
                cpu_energy_j=w.cpu_energy_j,
                dram_energy_j=w.dram_energy_j,
                wall_energy_j=w.wall_energy_j,
                quality=Quality(w.quality),
            )
        )
    return out


def previous_windows_for_many(
    *, requests: list[tuple[int, list[int], dt.datetime]]
) -> dict[int, dict[int, PreviousWindow]]:
    """Each device's last stored window ending at or before ``before``, for many (key, device_ids,
    before) requests in one query (telemetry.readers.previous_windows_for_many)."""
    out: dict[int, dict[int, PreviousWindow]] = {key: {} for key, _, _ in requests}
    stamps: dict[int, dt.datetime] = {}
    for p in readers.previous_windows_for_many(requests=requests):
        out[p.key][p.device_id] = PreviousWindow(
            end=_stamp(stamps, p.end_us), avg_power_w=p.avg_power_w, counter_mj=p.counter_mj, util_pct=p.util_pct
        )
    return out


def allocations_by_device(allocations: list[Allocation]) -> dict[int, list[tuple[int, Allocation]]]:
    """Allocations grouped by device, each with its position in ``allocations`` (for
    ``allocations_within``)."""
    out: dict[int, list[tuple[int, Allocation]]] = {}
    for position, allocation in enumerate(allocations):
        out.setdefault(allocation.device_id, []).append((position, allocation))
    return out


def allocations_within(
    by_device: dict[int, list[tuple[int, Allocation]]],
    *,
    device_ids: Iterable[int],
    start: dt.datetime,
    end: dt.datetime,
) -> list[Allocation]:
    """The allocations of these devices that overlap [start, end), in the order of the list
    ``by_device`` was made from (``allocations_by_device``): a batch looks at its own devices'
    allocations only, not at every allocation of its site."""
    found = sorted(
        (position, allocation)
        for device_id in set(device_ids)
        for position, allocation in by_device.get(device_id, ())
        if allocation.start < end and (allocation.end is None or allocation.end > start)
    )
    return [allocation for _, allocation in found]
