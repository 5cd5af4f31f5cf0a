"""dcgm-exporter as a telemetry source: parse its Prometheus text exposition and turn two
scrapes into wire-format GPU windows (docs/wire-format.md) plus DCGM profiling ratios.

Pure parsing (stdlib only); the caller scrapes ``http://<host>:9400/metrics`` on its own
schedule and keeps the previous scrape.

Metrics used (dcgm-exporter default counters; labels ``gpu``, ``UUID``, ``Hostname`` and,
with pod mapping, ``pod``/``namespace``/``container``, or ``hpc_job`` with HPC job mapping):

- ``DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION`` mJ since driver load (counter): window energy from
  the delta, quality ``measured``. A decrease is a counter reset (driver reload): the window
  falls back to power integration.
- ``DCGM_FI_DEV_POWER_USAGE`` W (instantaneous): trapezoid of the two scrapes when there is no
  usable counter (quality ``integrated``); ``avg_power_w`` is energy / duration either way.
- ``DCGM_FI_DEV_GPU_UTIL`` %, ``DCGM_FI_DEV_MEM_COPY_UTIL`` %, ``DCGM_FI_DEV_FB_USED`` MiB,
  ``DCGM_FI_DEV_POWER_MGMT_LIMIT`` W when exported; else utilisation from SM activity.
- ``DCGM_FI_PROF_SM_ACTIVE``, ``DCGM_FI_PROF_PIPE_TENSOR_ACTIVE``, ``DCGM_FI_PROF_DRAM_ACTIVE``:
  ratios 0..1 averaged over DCGM's sampling interval; reported per window as the mean of the
  two scrapes.

dcgm-exporter exposes no process ids: each GPU's ``processes`` holds one entry with
``pid: null`` and the job key from its labels (``hpc_job`` -> ``slurm:<id>``; a pod ->
``k8s:<pod uid>`` through the caller's resolver, since the exporter labels pods by name).
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field

ENERGY = "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION"
POWER = "DCGM_FI_DEV_POWER_USAGE"
GPU_UTIL = "DCGM_FI_DEV_GPU_UTIL"
MEM_UTIL = "DCGM_FI_DEV_MEM_COPY_UTIL"
FB_USED = "DCGM_FI_DEV_FB_USED"
POWER_LIMIT = "DCGM_FI_DEV_POWER_MGMT_LIMIT"
SM_ACTIVE = "DCGM_FI_PROF_SM_ACTIVE"
TENSOR_ACTIVE = "DCGM_FI_PROF_PIPE_TENSOR_ACTIVE"
DRAM_ACTIVE = "DCGM_FI_PROF_DRAM_ACTIVE"

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


@dataclass
class GpuReading:
    """One GPU in one scrape."""

    uuid: str
    index: int
    name: str
    hostname: str
    metrics: dict[str, float] = field(default_factory=dict)
    pod: str | None = None
    namespace: str | None = None
    hpc_job: str | None = None


@dataclass(frozen=True)
class Scrape:
    at: dt.datetime
    gpus: dict[str, GpuReading]  # by UUID


def scrape_parse(*, text: str, at: dt.datetime) -> Scrape:
    """Group DCGM samples by GPU UUID. ``at`` is when the scrape was taken (aware UTC)."""
    if at.tzinfo is None:
        raise ValueError("at must be timezone-aware")
    gpus: dict[str, GpuReading] = {}
    for sample in parse_exposition(text):
        if not sample.name.startswith("DCGM_FI_"):
            continue
        uuid = sample.labels.get("UUID")
        if not uuid:
            continue
        reading = gpus.get(uuid)
        if reading is None:
            reading = gpus[uuid] = GpuReading(
                uuid=uuid,
                index=int(sample.labels.get("gpu", "0")),
                name=sample.labels.get("modelName", ""),
                hostname=sample.labels.get("Hostname", ""),
            )
        reading.metrics[sample.name] = sample.value
        # Job labels appear on the samples of GPUs a pod/job holds; keep the first seen.
        reading.pod = reading.pod or sample.labels.get("pod") or None
        reading.namespace = reading.namespace or sample.labels.get("namespace") or None
        reading.hpc_job = reading.hpc_job or sample.labels.get("hpc_job") or None
    return Scrape(at=at.astimezone(dt.UTC), gpus=gpus)


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


def job_key_for(reading: GpuReading, *, pod_uid: Callable[[str, str], str | None] | None = None) -> str | None:
    """``slurm:<hpc_job>`` or ``k8s:<pod uid>`` (via ``pod_uid(namespace, pod)``), else None."""
    if reading.hpc_job:
        return f"slurm:{reading.hpc_job}"
    if reading.pod and pod_uid is not None:
        uid = pod_uid(reading.namespace or "default", reading.pod)
        return f"k8s:{uid}" if uid else None
    return None


def windows_from_scrapes(
    *,
    previous: Scrape,
    current: Scrape,
    seq: int,
    pod_uid: Callable[[str, str], str | None] | None = None,
) -> dict:
    """One wire-format window covering [previous.at, current.at) for the GPUs in both scrapes.

    The window has no ``host`` part: dcgm-exporter measures GPUs only (the agent, or another
    source, reports CPU/DRAM)."""
    duration_s = (current.at - previous.at).total_seconds()
    if duration_s <= 0:
        raise ValueError("current scrape must be later than the previous one")
    gpus: list[dict] = []
    for uuid in sorted(current.gpus, key=lambda u: current.gpus[u].index):
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
        key = job_key_for(now, pod_uid=pod_uid)
        gpus.append(
            {
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
                "processes": (
                    [{"pid": None, "sm_util_pct": (sm * 100.0 if sm is not None else util), "job_key": key}]
                    if key
                    else []
                ),
            }
        )
    return {
        "seq": seq,
        "start": previous.at.isoformat().replace("+00:00", "Z"),
        "end": current.at.isoformat().replace("+00:00", "Z"),
        "gpus": gpus,
    }
