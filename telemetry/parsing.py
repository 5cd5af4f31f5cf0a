"""Strict parsing of agent batches (docs/wire-format.md) into plain rows.

Hand-written rather than a DRF serializer: a batch carries thousands of windows and this
runs on the hot ingest path (a serializer per window costs ~20x more). Every error names
the offending field with its JSON path, e.g. ``windows[3].gpus[1].energy_j``.
"""

from __future__ import annotations

import datetime as dt
import math
import re
import uuid
import zlib
from dataclasses import dataclass, field
from typing import Any

from telemetry.series import GpuSeries, rows_from_series, series_from_rows

QUALITIES = frozenset({"measured", "integrated", "interpolated", "modelled"})
# What a device's energy counter measures: the GPU board alone (the default), or a module
# whose counter also covers its CPU and memory (Grace Hopper / Grace Blackwell: the host's
# CPU and memory energy is then inside the GPU window and the host reports none of it).
ENERGY_COVERS = frozenset({"gpu", "gpu+memory", "gpu+cpu+memory"})
MAX_PROCESSES = 256
MAX_MIG_INSTANCES = 64  # an H100/B200 has at most 7 GPU instances x 7 compute instances
_MIG_SLICES = re.compile(r"(?:^|\.)(\d+)g\.")
# Device.index is a PositiveIntegerField: a PostgreSQL integer, so 2^31-1 is the most it holds.
MAX_DEVICE_INDEX = 2**31 - 1
_MAX_INT = 2**63 - 1  # PostgreSQL bigint


class BatchError(Exception):
    """A rejected batch: HTTP status, the field path and a message for the problem response."""

    def __init__(self, status: int, field_path: str, message: str) -> None:
        super().__init__(f"{field_path}: {message}")
        self.status = status
        self.field = field_path
        self.message = message


def decompress(*, body: bytes, encoding: str, max_bytes: int) -> bytes:
    """Inflate a gzip body without ever holding more than max_bytes (refuses gzip bombs)."""
    encoding = (encoding or "identity").strip().lower()
    if encoding in ("", "identity"):
        if len(body) > max_bytes:
            raise BatchError(413, "body", f"body exceeds {max_bytes} bytes")
        return body
    if encoding != "gzip":
        raise BatchError(415, "Content-Encoding", f"unsupported content encoding {encoding!r}; use gzip or identity")
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        out = inflater.decompress(body, max_bytes + 1)
    except zlib.error as exc:
        raise BatchError(400, "body", f"invalid gzip data: {exc}") from exc
    if len(out) > max_bytes or inflater.unconsumed_tail:
        raise BatchError(413, "body", f"decompressed body exceeds {max_bytes} bytes")
    if not inflater.eof:
        raise BatchError(400, "body", "truncated gzip data")
    if inflater.unused_data:
        # The agent sends one gzip member: anything after it is corruption, never more windows.
        raise BatchError(400, "body", "data after the end of the gzip stream")
    return out


@dataclass(slots=True)
class GpuRow:
    uuid: str
    index: int
    name: str
    seq: int
    start: dt.datetime
    end: dt.datetime
    energy_j: float
    counter_mj: int | None
    avg_power_w: float
    max_power_w: float
    util_pct: float
    mem_util_pct: float
    mem_used_mib: float | None  # None: the agent could not read the GPU's memory in the window
    power_limit_w: float | None
    quality: str
    processes: list[dict[str, Any]]
    # Normalised MIG instances (``_mig_instances``); empty for a GPU not in MIG mode.
    mig_instances: list[dict[str, Any]] = field(default_factory=list)
    energy_covers: str = "gpu"


@dataclass
class HostRow:
    seq: int
    start: dt.datetime
    end: dt.datetime
    cpu_energy_j: float
    dram_energy_j: float
    wall_energy_j: float | None
    cpu_util_pct: float
    quality: str


@dataclass
class ParsedBatch:
    batch_id: uuid.UUID
    hostname: str
    agent_version: str
    sent_at: dt.datetime | None
    host_rows: list[HostRow] = field(default_factory=list)
    # The GPU windows as one columnar series per device (``telemetry.series``): set by the v2
    # parser (``telemetry.wire_v2``), else grouped from the v1 rows on first use.
    series: list[GpuSeries] | None = None
    # The v1 parser's rows; for a v2 batch derived from ``series`` on first use of ``gpu_rows``.
    rows: list[GpuRow] | None = field(default=None, repr=False)

    @property
    def gpu_rows(self) -> list[GpuRow]:
        """One row per GPU window (window-major), for code that still reads rows."""
        if self.rows is None:
            self.rows = rows_from_series(self.series) if self.series is not None else []
        return self.rows

    @property
    def gpu_series(self) -> list[GpuSeries]:
        if self.series is None:
            self.series = series_from_rows(self.gpu_rows)
        return self.series

    @property
    def first_start(self) -> dt.datetime:
        return self.host_rows[0].start

    @property
    def last_end(self) -> dt.datetime:
        return self.host_rows[-1].end

    @property
    def first_seq(self) -> int:
        return self.host_rows[0].seq

    @property
    def last_seq(self) -> int:
        return self.host_rows[-1].seq


def _bad(path: str, message: str) -> BatchError:
    return BatchError(400, path, message)


def _obj(value: Any, path: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _bad(path, "must be an object")
    return value


def _num(
    obj: dict[str, Any],
    key: str,
    path: str,
    *,
    minimum: float | None = 0.0,
    maximum: float | None = None,
    optional: bool = False,
) -> float | None:
    value = obj.get(key)
    if value is None:
        if optional:
            return None
        raise _bad(f"{path}.{key}", "is required")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _bad(f"{path}.{key}", "must be a number")
    try:
        number = float(value)
    except OverflowError:  # an integer beyond the float range (JSON has no limit)
        number = math.inf
    if not math.isfinite(number):
        raise _bad(f"{path}.{key}", "must be finite (no NaN or infinity)")
    if minimum is not None and number < minimum:
        raise _bad(f"{path}.{key}", f"must be >= {minimum:g}")
    if maximum is not None and number > maximum:
        raise _bad(f"{path}.{key}", f"must be <= {maximum:g}")
    return number


def _int(
    obj: dict[str, Any], key: str, path: str, *, minimum: int = 0, maximum: int = _MAX_INT, optional: bool = False
) -> int | None:
    value = obj.get(key)
    if value is None:
        if optional:
            return None
        raise _bad(f"{path}.{key}", "is required")
    if isinstance(value, bool) or not isinstance(value, int):
        raise _bad(f"{path}.{key}", "must be an integer")
    if value < minimum or value > maximum:
        bound = "2^63-1" if maximum == _MAX_INT else str(maximum)
        raise _bad(f"{path}.{key}", f"must be between {minimum} and {bound}")
    return value


def _str(obj: dict[str, Any], key: str, path: str, *, max_len: int = 200, optional: bool = False) -> str:
    value = obj.get(key)
    if value is None:
        if optional:
            return ""
        raise _bad(f"{path}.{key}", "is required")
    if not isinstance(value, str) or not value.strip():
        raise _bad(f"{path}.{key}", "must be a non-empty string")
    if len(value) > max_len:
        raise _bad(f"{path}.{key}", f"must be at most {max_len} characters")
    return value


_time_cache: dict[str, dt.datetime] = {}


def _time(obj: dict[str, Any], key: str, path: str, *, optional: bool = False) -> dt.datetime | None:
    value = obj.get(key)
    if value is None and optional:
        return None
    if not isinstance(value, str):
        raise _bad(f"{path}.{key}", "must be an ISO 8601 timestamp string")
    cached = _time_cache.get(value)
    if cached is not None:
        return cached
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        raise _bad(f"{path}.{key}", f"{value[:40]!r} is not an ISO 8601 timestamp") from None
    if parsed.tzinfo is None:
        raise _bad(f"{path}.{key}", "must carry a UTC offset (e.g. 'Z')")
    parsed = parsed.astimezone(dt.UTC)
    if len(_time_cache) > 100_000:
        _time_cache.clear()
    _time_cache[value] = parsed
    return parsed


def _quality(obj: dict[str, Any], path: str) -> str:
    value = obj.get("quality")
    if value not in QUALITIES:
        raise _bad(f"{path}.quality", f"must be one of {sorted(QUALITIES)}")
    return str(value)


def _processes(value: Any, path: str) -> list[dict[str, Any]]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise _bad(path, "must be a list")
    if len(value) > MAX_PROCESSES:
        raise _bad(path, f"at most {MAX_PROCESSES} processes per GPU window")
    out = []
    for index, raw in enumerate(value):
        ppath = f"{path}[{index}]"
        proc = _obj(raw, ppath)
        # null: the source sees workloads, not processes (dcgm-exporter labels pods and jobs)
        pid = _int(proc, "pid", ppath, optional=True)
        # null: the driver gave no per-process utilisation (attribution then splits by share)
        sm = _num(proc, "sm_util_pct", ppath, maximum=100.0, optional=True)
        job_key = proc.get("job_key")
        if job_key is not None and (not isinstance(job_key, str) or len(job_key) > 200):
            raise _bad(f"{ppath}.job_key", "must be a string of at most 200 characters or null")
        out.append({"pid": pid, "sm_util_pct": sm, "job_key": job_key})
    return out


def _mig_instances(value: Any, path: str, processes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The MIG instance list of a GPU window, normalised for storage and attribution.

    Each instance: ``gpu_instance_id`` and ``compute_instance_id`` (ints or null), ``profile``,
    ``slices`` (given, else from the profile, e.g. ``3g.40gb`` -> 3; null when neither),
    ``activity`` (measured graphics-engine activity 0..1, null when unmeasured),
    ``mem_used_mib``, and ``job_keys``: the keys given plus those of the window's processes whose
    pid the instance lists (the agent sends pids, dcgm-exporter job keys)."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise _bad(path, "must be a list")
    if len(value) > MAX_MIG_INSTANCES:
        raise _bad(path, f"at most {MAX_MIG_INSTANCES} MIG instances per GPU window")
    key_of_pid = {p["pid"]: p["job_key"] for p in processes if p["pid"] is not None and p["job_key"]}
    out = []
    for index, raw in enumerate(value):
        ipath = f"{path}[{index}]"
        inst = _obj(raw, ipath)
        profile = _str(inst, "profile", ipath, max_len=40, optional=True)
        slices = _int(inst, "slices", ipath, minimum=1, maximum=8, optional=True)
        if slices is None and profile:
            match = _MIG_SLICES.search(profile)
            slices = int(match.group(1)) if match and 1 <= int(match.group(1)) <= 8 else None
        pids = inst.get("pids")
        if pids is not None and (
            not isinstance(pids, list) or any(isinstance(p, bool) or not isinstance(p, int) for p in pids)
        ):
            raise _bad(f"{ipath}.pids", "must be a list of integers")
        keys = inst.get("job_keys")
        if keys is not None and (
            not isinstance(keys, list) or any(not isinstance(k, str) or not k or len(k) > 200 for k in keys)
        ):
            raise _bad(f"{ipath}.job_keys", "must be a list of non-empty strings of at most 200 characters")
        job_keys = set(keys or ())
        job_keys.update(key_of_pid[pid] for pid in pids or () if pid in key_of_pid)
        out.append(
            {
                "uuid": _str(inst, "uuid", ipath, max_len=100, optional=True) or None,
                "gpu_instance_id": _int(inst, "gpu_instance_id", ipath, maximum=1024, optional=True),
                "compute_instance_id": _int(inst, "compute_instance_id", ipath, maximum=1024, optional=True),
                "profile": profile or None,
                "slices": slices,
                "activity": _num(inst, "activity", ipath, maximum=1.0, optional=True),
                "mem_used_mib": _num(inst, "mem_used_mib", ipath, optional=True),
                "job_keys": sorted(job_keys),
            }
        )
    return out


def _energy_covers(gpu: dict[str, Any], path: str) -> str:
    value = gpu.get("energy_covers")
    if value is None:
        return "gpu"
    if value not in ENERGY_COVERS:
        raise _bad(f"{path}.energy_covers", f"must be one of {sorted(ENERGY_COVERS)}")
    return str(value)


_MAX_FLOAT = 1.7976931348623157e308
_BAIL = object()


def _fnum(value: Any, maximum: float) -> Any:
    """A float in [0, maximum] (finite), as _num would return it, or _BAIL for the checked path."""
    kind = type(value)
    if kind is float:
        pass
    elif kind is int:
        try:
            value = float(value)
        except OverflowError:
            return _BAIL
    else:
        return _BAIL
    if 0.0 <= value <= maximum:
        return value
    return _BAIL


def _gpu_row_fast(
    gpu: Any, seq: int, start: dt.datetime, end: dt.datetime, duration_s: float, seen: set[str]
) -> GpuRow | None:
    """Build the row for a GPU window that needs no error message; None means: use the checked path."""
    if type(gpu) is not dict:
        return None
    try:
        gpu_uuid = gpu.get("uuid")
        if type(gpu_uuid) is not str or len(gpu_uuid) > 100 or not gpu_uuid.strip() or gpu_uuid in seen:
            return None
        energy_j = _fnum(gpu.get("energy_j"), _MAX_FLOAT)
        max_power_w = _fnum(gpu.get("max_power_w"), 5000.0)
        avg_power_w = _fnum(gpu.get("avg_power_w"), 5000.0)
        util_pct = _fnum(gpu.get("util_pct"), 100.0)
        mem_util_pct = _fnum(gpu.get("mem_util_pct"), 100.0)
        mem_used_mib = gpu.get("mem_used_mib")
        if mem_used_mib is not None:
            mem_used_mib = _fnum(mem_used_mib, _MAX_FLOAT)
        if (
            energy_j is _BAIL
            or max_power_w is _BAIL
            or avg_power_w is _BAIL
            or util_pct is _BAIL
            or mem_util_pct is _BAIL
            or mem_used_mib is _BAIL
            or energy_j > 5000.0 * duration_s
        ):
            return None
        power_limit_w = gpu.get("power_limit_w")
        if power_limit_w is not None:
            power_limit_w = _fnum(power_limit_w, 5000.0)
            if power_limit_w is _BAIL:
                return None
        index = gpu.get("index")
        if type(index) is not int or not 0 <= index <= MAX_DEVICE_INDEX:
            return None
        counter_mj = gpu.get("counter_mj")
        if counter_mj is not None and (type(counter_mj) is not int or not 0 <= counter_mj <= _MAX_INT):
            return None
        name = gpu.get("name")
        if name is None:
            name = ""
        elif type(name) is not str or len(name) > 200 or not name.strip():
            return None
        quality = gpu.get("quality")
        if quality not in QUALITIES:
            return None
        raw_processes = gpu.get("processes")
        processes: list[dict[str, Any]] = []
        if raw_processes is not None:
            if type(raw_processes) is not list or len(raw_processes) > MAX_PROCESSES:
                return None
            for proc in raw_processes:
                if type(proc) is not dict:
                    return None
                pid = proc.get("pid")
                if pid is not None and (type(pid) is not int or not 0 <= pid <= _MAX_INT):
                    return None
                sm = proc.get("sm_util_pct")
                if sm is not None:
                    sm = _fnum(sm, 100.0)
                    if sm is _BAIL:
                        return None
                job_key = proc.get("job_key")
                if job_key is not None and (type(job_key) is not str or len(job_key) > 200):
                    return None
                processes.append({"pid": pid, "sm_util_pct": sm, "job_key": job_key})
        raw_mig = gpu.get("mig_instances")
        mig_instances = _mig_instances(raw_mig, "", processes) if raw_mig is not None else []
        energy_covers = gpu.get("energy_covers", "gpu")
        if energy_covers not in ENERGY_COVERS:
            return None
    except (TypeError, OverflowError, BatchError):
        return None
    seen.add(gpu_uuid)
    return GpuRow(
        gpu_uuid,
        index,
        name,
        seq,
        start,
        end,
        energy_j,
        counter_mj,
        avg_power_w or 0.0,
        max_power_w,
        util_pct or 0.0,
        mem_util_pct or 0.0,
        mem_used_mib,
        power_limit_w,
        str(quality),
        processes,
        mig_instances,
        str(energy_covers),
    )


def _gpu_row_checked(
    raw_gpu: Any, gpath: str, seq: int, start: dt.datetime, end: dt.datetime, duration_s: float, seen: set[str]
) -> GpuRow:
    gpu = _obj(raw_gpu, gpath)
    gpu_uuid = _str(gpu, "uuid", gpath, max_len=100)
    if gpu_uuid in seen:
        raise _bad(f"{gpath}.uuid", "appears twice in the same window")
    seen.add(gpu_uuid)
    energy_j = _num(gpu, "energy_j", gpath)
    max_power_w = _num(gpu, "max_power_w", gpath, maximum=5000.0)
    assert energy_j is not None and max_power_w is not None
    # A GPU cannot draw more than 5 kW: an energy implying more is a unit error (mJ sent as J).
    if energy_j > 5000.0 * duration_s:
        raise _bad(f"{gpath}.energy_j", f"{energy_j:g} J in {duration_s:g} s implies over 5 kW; check units (J)")
    processes = _processes(gpu.get("processes"), f"{gpath}.processes")
    return GpuRow(
        uuid=gpu_uuid,
        index=_int(gpu, "index", gpath, maximum=MAX_DEVICE_INDEX) or 0,
        name=_str(gpu, "name", gpath, optional=True),
        seq=seq,
        start=start,
        end=end,
        energy_j=energy_j,
        counter_mj=_int(gpu, "counter_mj", gpath, optional=True),
        avg_power_w=_num(gpu, "avg_power_w", gpath, maximum=5000.0) or 0.0,
        max_power_w=max_power_w,
        util_pct=_num(gpu, "util_pct", gpath, maximum=100.0) or 0.0,
        mem_util_pct=_num(gpu, "mem_util_pct", gpath, maximum=100.0) or 0.0,
        mem_used_mib=_num(gpu, "mem_used_mib", gpath, optional=True),
        power_limit_w=_num(gpu, "power_limit_w", gpath, optional=True, maximum=5000.0),
        quality=_quality(gpu, gpath),
        processes=processes,
        mig_instances=_mig_instances(gpu.get("mig_instances"), f"{gpath}.mig_instances", processes),
        energy_covers=_energy_covers(gpu, gpath),
    )


def parse_header(root: dict[str, Any]) -> tuple[uuid.UUID, str, str, dt.datetime | None]:
    """(batch_id, hostname, agent_version, sent_at): the members v1 and v2 share."""
    raw_id = root.get("batch_id")
    try:
        batch_id = uuid.UUID(str(raw_id)) if isinstance(raw_id, str) else None
    except ValueError:
        batch_id = None
    if batch_id is None:
        raise _bad("batch_id", "must be a UUID string")
    hostname = _str(root, "hostname", "body", max_len=253)
    agent_version = _str(root, "agent_version", "body", max_len=40, optional=True)
    sent_at = _time(root, "sent_at", "body", optional=True)
    return batch_id, hostname, agent_version, sent_at


def parse_batch(
    *, data: Any, now: dt.datetime, clock_skew_s: float, retention_days: int, max_windows: int
) -> ParsedBatch:
    """Validate a decoded batch; raise BatchError naming the first offending field."""
    root = _obj(data, "body")
    fmt = root.get("format")
    if fmt is not None and fmt != 1:
        raise _bad("format", "must be 1 (or absent) for this parser")
    batch_id, hostname, agent_version, sent_at = parse_header(root)
    windows = root.get("windows")
    if not isinstance(windows, list) or not windows:
        raise _bad("windows", "must be a non-empty list")
    latest_allowed = now + dt.timedelta(seconds=clock_skew_s)
    oldest_allowed = now - dt.timedelta(days=retention_days)
    batch = ParsedBatch(batch_id=batch_id, hostname=hostname, agent_version=agent_version, sent_at=sent_at, rows=[])
    gpu_count = 0
    prev_seq: int | None = None
    prev_end: dt.datetime | None = None
    for w_index, raw_window in enumerate(windows):
        wpath = f"windows[{w_index}]"
        window = _obj(raw_window, wpath)
        seq = _int(window, "seq", wpath)
        start = _time(window, "start", wpath)
        end = _time(window, "end", wpath)
        assert seq is not None and start is not None and end is not None
        if end <= start:
            raise _bad(f"{wpath}.end", "must be after start")
        if (end - start).total_seconds() > 3600:
            raise _bad(f"{wpath}.end", "a window may span at most 3600 s")
        if end > latest_allowed:
            raise _bad(f"{wpath}.end", f"is in the future beyond the {clock_skew_s:g} s clock-skew allowance")
        if start < oldest_allowed:
            raise _bad(f"{wpath}.start", f"is older than the {retention_days}-day raw telemetry retention")
        if prev_seq is not None and seq <= prev_seq:
            raise _bad(f"{wpath}.seq", "windows must be in strictly increasing seq order")
        if prev_end is not None and start < prev_end:
            raise _bad(f"{wpath}.start", "overlaps the previous window")
        prev_seq, prev_end = seq, end
        host = _obj(window.get("host"), f"{wpath}.host")
        hpath = f"{wpath}.host"
        batch.host_rows.append(
            HostRow(
                seq=seq,
                start=start,
                end=end,
                cpu_energy_j=_num(host, "cpu_energy_j", hpath) or 0.0,
                dram_energy_j=_num(host, "dram_energy_j", hpath) or 0.0,
                wall_energy_j=_num(host, "wall_energy_j", hpath, optional=True),
                cpu_util_pct=_num(host, "cpu_util_pct", hpath, maximum=100.0) or 0.0,
                quality=_quality(host, hpath),
            )
        )
        gpus = window.get("gpus")
        if not isinstance(gpus, list):
            raise _bad(f"{wpath}.gpus", "must be a list")
        seen: set[str] = set()
        duration_s = (end - start).total_seconds()
        for g_index, raw_gpu in enumerate(gpus):
            # Fast path for a well-formed GPU window; anything unusual goes through the checked
            # path below, which raises the precise error (or builds the very same row).
            row = _gpu_row_fast(raw_gpu, seq, start, end, duration_s, seen)
            if row is None:
                row = _gpu_row_checked(raw_gpu, f"{wpath}.gpus[{g_index}]", seq, start, end, duration_s, seen)
            batch.gpu_rows.append(row)
            gpu_count += 1
            if gpu_count > max_windows:
                raise BatchError(413, "windows", f"a batch may carry at most {max_windows} GPU windows")
            if "cpu" in row.energy_covers:
                host_row = batch.host_rows[-1]
                if host_row.quality == "modelled" and host_row.cpu_energy_j + host_row.dram_energy_j > 0.0:
                    raise _bad(
                        f"{wpath}.host.cpu_energy_j",
                        f"gpus[{g_index}] has a module energy counter covering the CPU and memory "
                        f"({row.energy_covers}); a modelled CPU/DRAM figure on top would count them twice",
                    )
    return batch
