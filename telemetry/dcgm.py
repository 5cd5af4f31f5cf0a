"""dcgm-exporter as a telemetry source: parse its Prometheus text exposition and turn two
scrapes into wire-format GPU windows (docs/wire-format.md) plus DCGM profiling ratios.

Pure parsing (stdlib only); the caller scrapes ``http://<host>:9400/metrics`` on its own
schedule and keeps the previous scrape.

Labels, as dcgm-exporter renders them (internal/pkg/rendermetrics, internal/pkg/transformation):

- the GPU: ``gpu`` (index), ``UUID`` (``uuid`` in the exporter's old-namespace mode),
  ``modelName``, ``hostname`` (``Hostname`` before the 2026 rename; both are read);
- a MIG GPU instance: ``GPU_I_PROFILE`` (e.g. ``3g.40gb``) and ``GPU_I_ID`` beside the parent's
  ``UUID``; samples without them are the physical GPU's. A compute-instance id is read from
  ``GPU_CI_ID`` where a deployment adds it, else the instance is keyed by GPU instance alone;
- the workload: ``pod``/``namespace``/``container`` (``pod_name``/``pod_namespace``/
  ``container_name`` in old-namespace mode), ``pod_uid`` when the exporter is told to add it,
  ``vgpu`` for a shared (time-sliced or MPS) replica, ``hpc_job`` with HPC job mapping. A GPU or
  instance shared by several pods or jobs carries one copy of each sample per pod or job.

Samples are keyed by (GPU UUID, GPU instance, compute instance): every pod or job seen on a
GPU or an instance is kept (never only the first), and each MIG instance keeps its own
activity, so two pods on two instances of one GPU are two instances with their own figures.

Metrics used:

- ``DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION`` mJ since driver load (counter): window energy from
  the delta, quality ``measured``. A decrease is a counter reset (driver reload): the window
  falls back to power integration. The counter exists per physical GPU only.
- ``DCGM_FI_DEV_POWER_USAGE`` W (instantaneous): trapezoid of the two scrapes when there is no
  usable counter (quality ``integrated``); ``avg_power_w`` is energy / duration either way.
- ``DCGM_FI_DEV_GPU_UTIL`` %, ``DCGM_FI_DEV_MEM_COPY_UTIL`` %, ``DCGM_FI_DEV_FB_USED`` MiB,
  ``DCGM_FI_DEV_POWER_MGMT_LIMIT`` W when exported; else utilisation from SM activity. With
  shared GPUs (``KubernetesVirtualGPUs``) the exporter writes ``GPU_UTIL`` per pod (the pod's
  processes' utilisation) beside the device's own sample: that per-pod value is the pod's
  ``sm_util_pct``. Where pods only carry copies of the device's value, several pods on one GPU
  get ``sm_util_pct`` null (the server then splits by allocation share) rather than each the
  whole device's utilisation.
- ``DCGM_FI_PROF_GR_ENGINE_ACTIVE`` (ratio 0..1) per MIG GPU instance: the instance's measured
  activity, the mean of the two scrapes, sent as ``mig_instances[].activity``; attribution
  splits the GPU's active energy by activity x slices (docs/method.md).
- ``DCGM_FI_PROF_SM_ACTIVE``, ``DCGM_FI_PROF_PIPE_TENSOR_ACTIVE``, ``DCGM_FI_PROF_DRAM_ACTIVE``:
  ratios 0..1 averaged over DCGM's sampling interval; reported per window as the mean of the
  two scrapes.

dcgm-exporter exposes no process ids: processes have ``pid: null`` and the job key from the
labels (``hpc_job`` -> ``slurm:<id>``; a pod -> ``k8s:<pod_uid>``, or through the caller's
resolver when the exporter labels pods by name only).

A scrape that yields no GPU (no DCGM sample with a GPU UUID label) is logged as a warning
(``event=dcgm_scrape_no_gpu``) and shows in ``scrape_status``: an exporter whose label set
this parser does not know must not look like an empty host.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field

logger = logging.getLogger("carbonledger.telemetry.dcgm")

ENERGY = "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION"
POWER = "DCGM_FI_DEV_POWER_USAGE"
GPU_UTIL = "DCGM_FI_DEV_GPU_UTIL"
MEM_UTIL = "DCGM_FI_DEV_MEM_COPY_UTIL"
FB_USED = "DCGM_FI_DEV_FB_USED"
POWER_LIMIT = "DCGM_FI_DEV_POWER_MGMT_LIMIT"
SM_ACTIVE = "DCGM_FI_PROF_SM_ACTIVE"
TENSOR_ACTIVE = "DCGM_FI_PROF_PIPE_TENSOR_ACTIVE"
DRAM_ACTIVE = "DCGM_FI_PROF_DRAM_ACTIVE"
GR_ENGINE_ACTIVE = "DCGM_FI_PROF_GR_ENGINE_ACTIVE"

_UUID_LABELS = ("UUID", "uuid")
_HOSTNAME_LABELS = ("hostname", "Hostname")
_POD_LABELS = ("pod", "pod_name")
_NAMESPACE_LABELS = ("namespace", "pod_namespace")
_MIG_SLICES = re.compile(r"(?:^|\.)(\d+)g\.")

_SAMPLE = re.compile(
    r"^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)"
    r"(?:\{(?P<labels>.*)\})?"
    r"\s+(?P<value>\S+)"
    r"(?:\s+(?P<ts>-?\d+))?\s*$"
)
_LABEL = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*(?:,|$)')


class ExpositionError(ValueError):
    """A line of the exposition that is not valid Prometheus text format."""


@dataclass(frozen=True)
class Sample:
    name: str
    labels: dict[str, str]
    value: float


def _unescape(value: str) -> str:
    return value.replace("\\\\", "\x00").replace('\\"', '"').replace("\\n", "\n").replace("\x00", "\\")


def parse_exposition(text: str) -> list[Sample]:
    """Samples of a Prometheus text exposition (comments and blank lines skipped)."""
    samples: list[Sample] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        match = _SAMPLE.match(line)
        if match is None:
            raise ExpositionError(f"line {number}: not a sample: {raw[:120]!r}")
        labels: dict[str, str] = {}
        label_text = match.group("labels") or ""
        position = 0
        while position < len(label_text):
            label = _LABEL.match(label_text, position)
            if label is None:
                raise ExpositionError(f"line {number}: bad labels: {label_text[:120]!r}")
            labels[label.group(1)] = _unescape(label.group(2))
            position = label.end()
        try:
            value = float(match.group("value"))
        except ValueError:
            raise ExpositionError(f"line {number}: bad value {match.group('value')!r}")
        samples.append(Sample(name=match.group("name"), labels=labels, value=value))
    return samples


@dataclass(frozen=True, order=True)
class Workload:
    """Who a sample's labels name: a pod (namespace, name, uid when labelled) or an HPC job."""

    namespace: str = ""
    pod: str = ""
    pod_uid: str = ""
    hpc_job: str = ""


@dataclass
class _Entity:
    """A physical GPU or one MIG instance in one scrape."""

    # Samples without workload labels (the device's own), else the first workload copy.
    metrics: dict[str, float] = field(default_factory=dict)
    # Per workload on it: that copy's values (per-pod values where the exporter computes them).
    workloads: dict[Workload, dict[str, float]] = field(default_factory=dict)
    # Metric names the exporter also wrote without workload labels (per-process mode).
    unlabelled: set[str] = field(default_factory=set)

    def add(self, sample: Sample, workload: Workload | None) -> None:
        if workload is None:
            self.metrics[sample.name] = sample.value
            self.unlabelled.add(sample.name)
            return
        self.workloads.setdefault(workload, {})[sample.name] = sample.value
        if sample.name not in self.unlabelled:
            self.metrics.setdefault(sample.name, sample.value)


@dataclass
class MigInstanceReading(_Entity):
    gpu_instance_id: int = 0
    compute_instance_id: int | None = None
    profile: str = ""

    @property
    def slices(self) -> int | None:
        """Compute slices of the profile (``3g.40gb`` -> 3; ``1c.3g.40gb`` -> 3), None if unknown."""
        match = _MIG_SLICES.search(self.profile)
        return int(match.group(1)) if match else None


@dataclass
class GpuReading(_Entity):
    """One physical GPU in one scrape, with its MIG instances keyed by (GPU instance, compute instance)."""

    uuid: str = ""
    index: int = 0
    name: str = ""
    hostname: str = ""
    instances: dict[tuple[int, int | None], MigInstanceReading] = field(default_factory=dict)

    def _first(self, attribute: str) -> str | None:
        for workload in sorted(self.workloads):
            value = getattr(workload, attribute)
            if value:
                return str(value)
        return None

    @property
    def pod(self) -> str | None:
        return self._first("pod")

    @property
    def namespace(self) -> str | None:
        return self._first("namespace")

    @property
    def hpc_job(self) -> str | None:
        return self._first("hpc_job")


@dataclass(frozen=True)
class Scrape:
    at: dt.datetime
    gpus: dict[str, GpuReading]  # by UUID
    dcgm_samples: int = 0  # DCGM_FI_* samples in the exposition
    unkeyed_samples: int = 0  # of those, samples with no GPU UUID label (not attributable)


def _label(labels: dict[str, str], names: tuple[str, ...]) -> str:
    for name in names:
        value = labels.get(name)
        if value:
            return value
    return ""


def _workload(labels: dict[str, str]) -> Workload | None:
    workload = Workload(
        namespace=_label(labels, _NAMESPACE_LABELS),
        pod=_label(labels, _POD_LABELS),
        pod_uid=labels.get("pod_uid", ""),
        hpc_job=labels.get("hpc_job", ""),
    )
    return None if workload == Workload() else workload


def _int_label(value: str | None) -> int | None:
    if value is None or not value.strip():
        return None
    try:
        return int(value)
    except ValueError:
        return None


def scrape_parse(*, text: str, at: dt.datetime) -> Scrape:
    """Group DCGM samples by GPU UUID and MIG instance. ``at`` is when the scrape was taken (aware UTC)."""
    if at.tzinfo is None:
        raise ValueError("at must be timezone-aware")
    gpus: dict[str, GpuReading] = {}
    dcgm_samples = unkeyed = 0
    for sample in parse_exposition(text):
        if not sample.name.startswith("DCGM_FI_"):
            continue
        dcgm_samples += 1
        labels = sample.labels
        uuid = _label(labels, _UUID_LABELS)
        if not uuid:
            unkeyed += 1
            continue
        reading = gpus.get(uuid)
        if reading is None:
            reading = gpus[uuid] = GpuReading(
                uuid=uuid,
                index=_int_label(labels.get("gpu")) or 0,
                name=labels.get("modelName", ""),
                hostname=_label(labels, _HOSTNAME_LABELS),
            )
        entity: _Entity = reading
        gpu_instance = _int_label(labels.get("GPU_I_ID"))
        if gpu_instance is not None:
            key = (gpu_instance, _int_label(labels.get("GPU_CI_ID")))
            instance = reading.instances.get(key)
            if instance is None:
                instance = reading.instances[key] = MigInstanceReading(
                    gpu_instance_id=key[0], compute_instance_id=key[1], profile=labels.get("GPU_I_PROFILE", "")
                )
            entity = instance
        entity.add(sample, _workload(labels))
    scrape = Scrape(at=at.astimezone(dt.UTC), gpus=gpus, dcgm_samples=dcgm_samples, unkeyed_samples=unkeyed)
    if not gpus:
        logger.warning(
            "event=dcgm_scrape_no_gpu at=%s dcgm_samples=%d unkeyed_samples=%d reason=%s",
            scrape.at.isoformat(),
            dcgm_samples,
            unkeyed,
            "no DCGM samples" if dcgm_samples == 0 else "no sample carries a UUID/uuid label",
        )
    return scrape


def scrape_status(scrape: Scrape) -> dict[str, int | bool]:
    """Figures for a status page or log line: ``ok`` is False when the scrape yielded no GPU."""
    return {
        "ok": bool(scrape.gpus),
        "gpus": len(scrape.gpus),
        "mig_instances": sum(len(g.instances) for g in scrape.gpus.values()),
        "workloads": sum(
            len(g.workloads) + sum(len(i.workloads) for i in g.instances.values()) for g in scrape.gpus.values()
        ),
        "dcgm_samples": scrape.dcgm_samples,
        "unkeyed_samples": scrape.unkeyed_samples,
    }


@dataclass(frozen=True)
class ProfilingRatios:
    sm_active: float | None
    tensor_active: float | None
    dram_active: float | None


def _mean(a: float | None, b: float | None) -> float | None:
    values = [v for v in (a, b) if v is not None and math.isfinite(v)]
    return sum(values) / len(values) if values else None


def profiling_ratios(*, previous: Scrape, current: Scrape) -> dict[str, ProfilingRatios]:
    """Per GPU, the mean of the two scrapes' DCGM profiling ratios (0..1)."""
    out: dict[str, ProfilingRatios] = {}
    for uuid, now in current.gpus.items():
        before = previous.gpus.get(uuid)
        pm = before.metrics if before else {}
        out[uuid] = ProfilingRatios(
            sm_active=_mean(pm.get(SM_ACTIVE), now.metrics.get(SM_ACTIVE)),
            tensor_active=_mean(pm.get(TENSOR_ACTIVE), now.metrics.get(TENSOR_ACTIVE)),
            dram_active=_mean(pm.get(DRAM_ACTIVE), now.metrics.get(DRAM_ACTIVE)),
        )
    return out


PodUid = Callable[[str, str], str | None]


def workload_job_key(workload: Workload, *, pod_uid: PodUid | None = None) -> str | None:
    """``slurm:<hpc_job>``, ``k8s:<pod uid>`` (the ``pod_uid`` label, else ``pod_uid(namespace,
    pod)``), else None."""
    if workload.hpc_job:
        return f"slurm:{workload.hpc_job}"
    if workload.pod_uid:
        return f"k8s:{workload.pod_uid}"
    if workload.pod and pod_uid is not None:
        uid = pod_uid(workload.namespace or "default", workload.pod)
        return f"k8s:{uid}" if uid else None
    return None


def job_key_for(reading: GpuReading, *, pod_uid: PodUid | None = None) -> str | None:
    """The job key of a GPU's first workload (sorted), or None."""
    for workload in sorted(reading.workloads):
        key = workload_job_key(workload, pod_uid=pod_uid)
        if key:
            return key
    return None


def _pct(value: float | None) -> float | None:
    return None if value is None else min(max(value, 0.0), 100.0)


def _workload_processes(
    now: _Entity, before: _Entity | None, *, alone_util: float, pod_uid: PodUid | None
) -> list[dict]:
    """One process entry (pid null) per job on a GPU or instance, in job-key order.

    A workload's own utilisation is used where the exporter wrote per-workload values beside the
    device's sample; a workload alone on the device has the device's (``alone_util``);
    copies of the device's value shared by several workloads say nothing about each: null."""
    keyed: dict[str, list[float | None]] = {}
    own_values = GPU_UTIL in now.unlabelled and any(GPU_UTIL in v for v in now.workloads.values())
    alone = len(now.workloads) == 1
    for workload, values in now.workloads.items():
        key = workload_job_key(workload, pod_uid=pod_uid)
        if key is None:
            continue
        util: float | None = None
        if own_values and GPU_UTIL in values:
            previous_values = before.workloads.get(workload, {}) if before is not None else {}
            util = _mean(previous_values.get(GPU_UTIL), values.get(GPU_UTIL))
        elif alone:
            util = alone_util
        keyed.setdefault(key, []).append(util)
    sums = {key: [u for u in utils if u is not None] for key, utils in keyed.items()}
    device_util = _mean(before.metrics.get(GPU_UTIL) if before is not None else None, now.metrics.get(GPU_UTIL))
    if own_values and device_util and not any(u for utils in sums.values() for u in utils):
        # Every workload reads 0 on a busy device: NVML saw processes that are none of the pods'
        # (an MPS server runs the clients' kernels), so the per-pod values measure nothing.
        sums = {key: [] for key in sums}
    return [
        {"pid": None, "sm_util_pct": _pct(sum(sums[key])) if sums[key] else None, "job_key": key}
        for key in sorted(sums)
    ]


def _mig_instances(now: GpuReading, before: GpuReading, *, pod_uid: PodUid | None) -> tuple[list[dict], list[dict]]:
    """The GPU's ``mig_instances`` and its processes (one per instance and job)."""
    instances: list[dict] = []
    processes: list[dict] = []
    for key in sorted(now.instances, key=lambda k: (k[0], -1 if k[1] is None else k[1])):
        inst = now.instances[key]
        prev = before.instances.get(key)
        activity = _mean(
            prev.metrics.get(GR_ENGINE_ACTIVE) if prev is not None else None, inst.metrics.get(GR_ENGINE_ACTIVE)
        )
        if activity is not None:
            activity = min(max(activity, 0.0), 1.0)
        keys = sorted({k for k in (workload_job_key(w, pod_uid=pod_uid) for w in inst.workloads) if k is not None})
        instances.append(
            {
                "gpu_instance_id": inst.gpu_instance_id,
                "compute_instance_id": inst.compute_instance_id,
                "profile": inst.profile or None,
                "slices": inst.slices,
                "activity": activity,
                "mem_used_mib": inst.metrics.get(FB_USED),
                "job_keys": keys,
            }
        )
        # The instance's activity is its jobs' utilisation of the instance (percent of it).
        share = None if activity is None or not keys else activity * 100.0 / len(keys)
        processes.extend({"pid": None, "sm_util_pct": share, "job_key": k} for k in keys)
    return instances, processes


def windows_from_scrapes(
    *,
    previous: Scrape,
    current: Scrape,
    seq: int,
    pod_uid: PodUid | None = None,
) -> dict:
    """One wire-format window covering [previous.at, current.at) for the GPUs in both scrapes.

    The window has no ``host`` part: dcgm-exporter measures GPUs only (the agent, or another
    source, reports CPU/DRAM)."""
    duration_s = (current.at - previous.at).total_seconds()
    if duration_s <= 0:
        raise ValueError("current scrape must be later than the previous one")
    gpus: list[dict] = []
    for uuid in sorted(current.gpus, key=lambda u: (current.gpus[u].index, u)):
        now = current.gpus[uuid]
        before = previous.gpus.get(uuid)
        if before is None:
            continue  # appeared in this scrape: no interval to measure yet
        counter_now = now.metrics.get(ENERGY)
        counter_before = before.metrics.get(ENERGY)
        power_now = now.metrics.get(POWER)
        power_before = before.metrics.get(POWER)
        if counter_now is not None and counter_before is not None and counter_now >= counter_before:
            energy_j = (counter_now - counter_before) / 1000.0  # mJ -> J
            quality = "measured"
        elif power_now is not None and power_before is not None:
            energy_j = (power_now + power_before) / 2.0 * duration_s
            quality = "integrated"
        else:
            continue  # neither a counter delta nor two power samples: nothing to report
        powers = [p for p in (power_before, power_now) if p is not None]
        sm = _mean(before.metrics.get(SM_ACTIVE), now.metrics.get(SM_ACTIVE))
        util = _mean(before.metrics.get(GPU_UTIL), now.metrics.get(GPU_UTIL))
        if util is None:
            util = sm * 100.0 if sm is not None else 0.0
        mem_util = _mean(before.metrics.get(MEM_UTIL), now.metrics.get(MEM_UTIL))
        if mem_util is None:
            dram = _mean(before.metrics.get(DRAM_ACTIVE), now.metrics.get(DRAM_ACTIVE))
            mem_util = dram * 100.0 if dram is not None else 0.0

        gpu: dict = {
            "uuid": uuid,
            "index": now.index,
            "name": now.name,
            "energy_j": energy_j,
            "counter_mj": int(counter_now) if counter_now is not None else None,
            "avg_power_w": energy_j / duration_s,
            "max_power_w": max(powers) if powers else energy_j / duration_s,
            "util_pct": min(max(util, 0.0), 100.0),
            "mem_util_pct": min(max(mem_util, 0.0), 100.0),
            "mem_used_mib": now.metrics.get(FB_USED, 0.0),
            "power_limit_w": now.metrics.get(POWER_LIMIT),
            "quality": quality,
            "processes": _workload_processes(
                now, before, alone_util=sm * 100.0 if sm is not None else util, pod_uid=pod_uid
            ),
        }
        if now.instances:
            instances, processes = _mig_instances(now, before, pod_uid=pod_uid)
            gpu["mig_instances"] = instances
            # A device-level copy of an instance's pod labels is not a second workload.
            on_instances = {p["job_key"] for p in processes}
            gpu["processes"] = processes + [p for p in gpu["processes"] if p["job_key"] not in on_instances]
            if gpu["mem_used_mib"] == 0.0:
                gpu["mem_used_mib"] = sum(i["mem_used_mib"] or 0.0 for i in instances)
        gpus.append(gpu)
    return {
        "seq": seq,
        "start": previous.at.isoformat().replace("+00:00", "Z"),
        "end": current.at.isoformat().replace("+00:00", "Z"),
        "gpus": gpus,
    }
