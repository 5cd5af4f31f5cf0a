"""Columnar wire format v2 (docs/wire-format.md, "Format 2"): validated with numpy over arrays.

A v2 batch carries the window columns once (seq, start_us, end_us), the host's columns once, and
per GPU its arrays. Validation applies v1's rules (``telemetry.parsing``) to whole columns; an
error names the element, e.g. ``gpus[2].energy_j[17]``. The result is a ``ParsedBatch`` whose
``series`` holds one ``GpuSeries`` per GPU built from the arrays: no Python object per GPU
window (host rows stay one ``HostRow`` per window).
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Callable
from typing import Any

import numpy as np

from accounting.domain.timebase import from_us, to_us
from telemetry.parsing import (
    _MAX_FLOAT,
    _MAX_INT,
    ENERGY_COVERS,
    MAX_DEVICE_INDEX,
    MAX_PROCESSES,
    QUALITIES,
    BatchError,
    HostRow,
    ParsedBatch,
    _bad,
    _int,
    _mig_instances,
    _obj,
    _str,
    parse_batch,
    parse_header,
)
from telemetry.series import GpuSeries

FORMAT = 2
MAX_WINDOW_US = 3600 * 1_000_000
MAX_GPU_POWER_W = 5000.0
_FLOAT_TYPES = frozenset({float, int})
_INT_TYPES = frozenset({int})
_KEY_TYPES = frozenset({str, type(None)})
_SHORT = 64  # columns up to this long are checked with Python's builtins (numpy's per-call cost)
_QUALITY_ERROR = f"must be one of {sorted(QUALITIES)}"


Path = Callable[[int], str]


def _at(path: str) -> Path:
    """Element i of one list: ``path[i]``."""
    return lambda i: f"{path}[{i}]"


class _Segments:
    """Where each GPU's elements lie in a column concatenated over the batch's GPUs."""

    def __init__(self, lengths: list[int]) -> None:
        bounds = [0, *itertools.accumulate(lengths)]
        self.offsets = np.array(bounds, dtype=np.int64)
        self.slices = [slice(lo, hi) for lo, hi in itertools.pairwise(bounds)]

    def path(self, key: str) -> Path:
        """Element i of the concatenation as ``gpus[j].key[k]``."""

        def name(i: int) -> str:
            j = int(np.searchsorted(self.offsets, i, side="right")) - 1
            return f"gpus[{j}].{key}[{i - int(self.offsets[j])}]"

        return name

    def split(self, array: np.ndarray) -> list[np.ndarray]:
        return [array[part] for part in self.slices]


def _column(obj: dict[str, Any], key: str, path: str, length: int, what: str) -> list[Any]:
    value = obj.get(key)
    if value is None:
        raise _bad(f"{path}.{key}", "is required")
    if not isinstance(value, list):
        raise _bad(f"{path}.{key}", "must be a list")
    if len(value) != length:
        raise _bad(f"{path}.{key}", f"must have {length} elements ({what}), has {len(value)}")
    return value


def _optional_column(obj: dict[str, Any], key: str, path: str, length: int, what: str) -> list[Any]:
    """A nullable column: omitted or null means null in every element."""
    if obj.get(key) is None:
        return [None] * length
    return _column(obj, key, path, length, what)


def _first(mask: np.ndarray) -> int:
    return int(np.flatnonzero(mask)[0])


def _floats_checked(values: list[Any], name: Path, *, nullable: bool) -> tuple[np.ndarray, np.ndarray]:
    """Element by element, with v1's messages: for a column numpy cannot take whole."""
    out = np.zeros(len(values), dtype=np.float64)
    nulls = np.zeros(len(values), dtype=bool)
    for i, value in enumerate(values):
        if value is None:
            if not nullable:
                raise _bad(name(i), "is required")
            nulls[i] = True
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _bad(name(i), "must be a number")
        try:
            out[i] = float(value)
        except OverflowError:
            raise _bad(name(i), "must be finite (no NaN or infinity)") from None
    return out, nulls


def _floats(
    values: list[Any], name: Path, *, maximum: float | None = None, nullable: bool = False
) -> tuple[np.ndarray, np.ndarray | None]:
    """A column of finite numbers in [0, maximum]: (values as float64, null mask when nullable;
    a null reads 0.0 in the values)."""
    nulls: np.ndarray | None = None
    arr: np.ndarray | None = None
    plain = set(map(type, values)) <= _FLOAT_TYPES
    if plain:
        try:
            arr = np.array(values, dtype=np.float64)
        except OverflowError:
            arr = None
    if arr is None:
        plain = False
        arr, nulls = _floats_checked(values, name, nullable=nullable)
    elif nullable:
        nulls = np.zeros(len(values), dtype=bool)
    if arr.shape[0]:
        upper = _MAX_FLOAT if maximum is None else maximum
        if plain and len(values) <= _SHORT:
            # A short column: the builtins cost less than numpy's calls. The sum is finite only
            # if every element is (or it overflowed: then the numpy check below decides).
            total = sum(values)
            valid = total - total == 0.0 and min(values) >= 0.0 and max(values) <= upper
        else:
            # min/max carry NaN through, and infinity is above every bound: one pass each.
            valid = bool(arr.min() >= 0.0 and arr.max() <= upper)
        if not valid:
            finite = np.isfinite(arr)
            if not finite.all():
                raise _bad(name(_first(~finite)), "must be finite (no NaN or infinity)")
            below = arr < 0.0
            if below.any():
                raise _bad(name(_first(below)), "must be >= 0")
            above = arr > upper
            if above.any():
                raise _bad(name(_first(above)), f"must be <= {upper:g}")
    return arr, nulls


def _ints(
    values: list[Any], name: Path, *, maximum: int = _MAX_INT, nullable: bool = False
) -> tuple[np.ndarray, np.ndarray | None]:
    """A column of integers in [0, maximum]: (values as int64, null mask when nullable; a null
    reads 0 in the values)."""
    bound = "2^63-1" if maximum == _MAX_INT else str(maximum)
    arr: np.ndarray | None = None
    nulls: np.ndarray | None = None
    plain = set(map(type, values)) <= _INT_TYPES
    if plain:
        try:
            arr = np.array(values, dtype=np.int64)
        except OverflowError:
            arr = None
    if arr is None:
        plain = False
        arr = np.zeros(len(values), dtype=np.int64)
        nulls = np.zeros(len(values), dtype=bool)
        for i, value in enumerate(values):
            if value is None:
                if not nullable:
                    raise _bad(name(i), "is required")
                nulls[i] = True
                continue
            if isinstance(value, bool) or not isinstance(value, int):
                raise _bad(name(i), "must be an integer")
            if not 0 <= value <= maximum:
                raise _bad(name(i), f"must be between 0 and {bound}")
            arr[i] = value
    elif nullable:
        nulls = np.zeros(len(values), dtype=bool)
    if not arr.shape[0]:
        return arr, nulls
    if plain and len(values) <= _SHORT:
        valid = min(values) >= 0 and max(values) <= maximum  # short: the builtins cost less
    else:
        valid = bool(arr.min() >= 0 and arr.max() <= maximum)
    if not valid:
        raise _bad(name(_first((arr < 0) | (arr > maximum))), f"must be between 0 and {bound}")
    return arr, nulls


def _nullable_list(values: np.ndarray, nulls: np.ndarray) -> list[Any]:
    out: list[Any] = values.tolist()
    if nulls.any():
        out = [None if null else value for value, null in zip(out, nulls.tolist(), strict=True)]
    return out


def _qualities(values: list[Any], name: Path) -> list[str]:
    try:
        valid = set(values) <= QUALITIES
    except TypeError:  # an unhashable element (a list or object)
        valid = False
    if not valid:
        bad = next(i for i, value in enumerate(values) if not isinstance(value, str) or value not in QUALITIES)
        raise _bad(name(bad), _QUALITY_ERROR)
    return values


def _job_keys(values: list[Any], name: Path) -> list[Any]:
    kinds = set(map(type, values))
    if kinds <= _KEY_TYPES and max((len(v) for v in values if v is not None), default=0) <= 200:
        return values
    bad = next(i for i, v in enumerate(values) if v is not None and (not isinstance(v, str) or len(v) > 200))
    raise _bad(name(bad), "must be a string of at most 200 characters or null")


def _runs(value: Any, path: str, length: int) -> list[tuple[int, Any, str]]:
    """Run-length pairs ``[count, list]`` covering ``length`` windows: (count, list, the list's path)."""
    if not isinstance(value, list):
        raise _bad(path, "must be a list of [count, list] runs")
    out = []
    total = 0
    for r, run in enumerate(value):
        rpath = f"{path}[{r}]"
        if not isinstance(run, list) or len(run) != 2:
            raise _bad(rpath, "must be a [count, list] pair")
        count = run[0]
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise _bad(f"{rpath}[0]", "must be an integer >= 1")
        total += count
        if total > length:
            raise _bad(f"{rpath}[0]", f"the runs cover more than the GPU's {length} windows")
        out.append((count, run[1], f"{rpath}[1]"))
    if total != length:
        raise _bad(path, f"the runs cover {total} windows; the GPU has {length}")
    return out


def _mig_per_window(
    raw_mig: Any, path: str, length: int, processes: list[list[dict[str, Any]]]
) -> tuple[list[dict[str, Any]], ...]:
    """The GPU's normalised MIG instances per window, from their runs (one list object shared by
    the windows of a run with the same pid -> job_key mapping)."""
    if raw_mig is None:
        none: list[dict[str, Any]] = []
        return tuple([none] * length)
    mig: list[list[dict[str, Any]]] = []
    position = 0
    for count, raw, rpath in _runs(raw_mig, path, length):
        # MIG job keys come from the window's processes (pid -> job_key): one normalisation per
        # distinct mapping within the run.
        cache: dict[tuple, list[dict[str, Any]]] = {}
        for procs in processes[position : position + count]:
            key = tuple(sorted((p["pid"], p["job_key"]) for p in procs if p["pid"] is not None and p["job_key"]))
            normalised = cache.get(key)
            if normalised is None:
                normalised = cache[key] = _mig_instances(raw, rpath, procs)
            mig.append(normalised)
        position += count
    return tuple(mig)


def _window_index(gpu: dict[str, Any], gpath: str, n_windows: int) -> np.ndarray | None:
    """Which batch windows the GPU has data for (None: all of them)."""
    value = gpu.get("window_index")
    if value is None:
        return None
    path = f"{gpath}.window_index"
    if not isinstance(value, list) or not value:
        raise _bad(path, "must be a non-empty list")
    index, _ = _ints(value, _at(path), maximum=n_windows - 1)
    if index.shape[0] > 1:
        not_increasing = np.diff(index) <= 0
        if not_increasing.any():
            raise _bad(f"{path}[{_first(not_increasing) + 1}]", "must be strictly increasing")
    return index


def _window_columns(root: dict[str, Any], now: dt.datetime, clock_skew_s: float, retention_days: int):
    """(seq, start_us, end_us) of the batch's windows, validated as v1 validates window times."""
    windows = root.get("windows")
    if not isinstance(windows, dict):
        raise _bad("windows", "must be an object of columns (seq, start_us, end_us)")
    raw_seq = windows.get("seq")
    if not isinstance(raw_seq, list) or not raw_seq:
        raise _bad("windows.seq", "must be a non-empty list")
    n = len(raw_seq)
    what = "one per window"
    seq, _ = _ints(raw_seq, _at("windows.seq"))
    start_us, _ = _ints(_column(windows, "start_us", "windows", n, what), _at("windows.start_us"))
    end_us, _ = _ints(_column(windows, "end_us", "windows", n, what), _at("windows.end_us"))
    span_us = end_us - start_us
    bad = span_us <= 0
    if bad.any():
        raise _bad(f"windows.end_us[{_first(bad)}]", "must be after start")
    bad = span_us > MAX_WINDOW_US
    if bad.any():
        raise _bad(f"windows.end_us[{_first(bad)}]", "a window may span at most 3600 s")
    bad = end_us > to_us(now + dt.timedelta(seconds=clock_skew_s))
    if bad.any():
        raise _bad(
            f"windows.end_us[{_first(bad)}]", f"is in the future beyond the {clock_skew_s:g} s clock-skew allowance"
        )
    bad = start_us < to_us(now - dt.timedelta(days=retention_days))
    if bad.any():
        raise _bad(
            f"windows.start_us[{_first(bad)}]", f"is older than the {retention_days}-day raw telemetry retention"
        )
    if n > 1:
        bad = seq[1:] <= seq[:-1]
        if bad.any():
            raise _bad(f"windows.seq[{_first(bad) + 1}]", "windows must be in strictly increasing seq order")
        bad = start_us[1:] < end_us[:-1]
        if bad.any():
            raise _bad(f"windows.start_us[{_first(bad) + 1}]", "overlaps the previous window")
    return seq, start_us, end_us


def _host_rows(root: dict[str, Any], seq: np.ndarray, start_us: np.ndarray, end_us: np.ndarray) -> list[HostRow]:
    n = int(seq.shape[0])
    what = "one per window"
    host = _obj(root.get("host"), "host")
    cpu_energy_j, _ = _floats(_column(host, "cpu_energy_j", "host", n, what), _at("host.cpu_energy_j"))
    dram_energy_j, _ = _floats(_column(host, "dram_energy_j", "host", n, what), _at("host.dram_energy_j"))
    wall_energy_j, wall_null = _floats(
        _optional_column(host, "wall_energy_j", "host", n, what), _at("host.wall_energy_j"), nullable=True
    )
    cpu_util_pct, _ = _floats(_column(host, "cpu_util_pct", "host", n, what), _at("host.cpu_util_pct"), maximum=100.0)
    quality = _qualities(_column(host, "quality", "host", n, what), _at("host.quality"))
    assert wall_null is not None
    return [
        HostRow(*fields)
        for fields in zip(
            seq.tolist(),
            [from_us(v) for v in start_us.tolist()],
            [from_us(v) for v in end_us.tolist()],
            cpu_energy_j.tolist(),
            dram_energy_j.tolist(),
            _nullable_list(wall_energy_j, wall_null),
            cpu_util_pct.tolist(),
            quality,
            strict=True,
        )
    ]


class _Device:
    """One entry of ``gpus``: its device fields and where its windows lie."""

    __slots__ = ("energy_covers", "entry", "index", "length", "name", "path", "uuid", "window_index")

    def __init__(self, entry: dict[str, Any], path: str, n_windows: int, seen: set[str]) -> None:
        self.entry, self.path = entry, path
        self.uuid = _str(entry, "uuid", path, max_len=100)
        if self.uuid in seen:
            raise _bad(f"{path}.uuid", "appears twice in the batch (one entry per GPU)")
        seen.add(self.uuid)
        index = _int(entry, "index", path, maximum=MAX_DEVICE_INDEX)
        assert index is not None
        self.index = index
        self.name = _str(entry, "name", path, optional=True)
        energy_covers = entry.get("energy_covers")
        if energy_covers is None:
            energy_covers = "gpu"
        elif energy_covers not in ENERGY_COVERS:
            raise _bad(f"{path}.energy_covers", f"must be one of {sorted(ENERGY_COVERS)}")
        self.energy_covers = str(energy_covers)
        self.window_index = _window_index(entry, path, n_windows)
        self.length = n_windows if self.window_index is None else int(self.window_index.shape[0])

    def column(self, key: str, *, optional: bool = False) -> list[Any]:
        what = "one per window of this GPU"
        if optional:
            return _optional_column(self.entry, key, self.path, self.length, what)
        return _column(self.entry, key, self.path, self.length, what)


def _concat(devices: list[_Device], key: str, *, optional: bool = False) -> list[Any]:
    """The devices' columns ``key`` end to end. A list of the right length is taken as it is;
    anything else goes through ``_Device.column`` (a null optional column, or the error)."""
    out: list[Any] = []
    for device in devices:
        value = device.entry.get(key)
        if type(value) is list and len(value) == device.length:
            out += value
        else:
            out += device.column(key, optional=optional)
    return out


def _processes(devices: list[_Device], offsets: np.ndarray, total: int) -> list[list[dict[str, Any]]]:
    """Every GPU window's processes (GPU windows concatenated), from each GPU's process table:
    one row per process and window, ``window`` (the window's position among the GPU's windows,
    non-decreasing), ``pid``, ``sm_util_pct``, ``job_key`` (null allowed; a column omitted is
    null throughout). Each process as v1 normalises it: ``{"pid", "sm_util_pct", "job_key"}``."""
    per_window: list[list[dict[str, Any]]] = [[] for _ in range(total)]
    tables: list[tuple[int, dict[str, Any], str, int]] = []
    for j, device in enumerate(devices):
        value = device.entry.get("processes")
        if value is None:
            continue
        path = f"{device.path}.processes"
        table = _obj(value, path)
        raw_window = table.get("window")
        if not isinstance(raw_window, list):
            raise _bad(f"{path}.window", "must be a list")
        if raw_window:
            tables.append((j, table, path, len(raw_window)))
    if not tables:
        return per_window
    segments = _Segments([rows for _, _, _, rows in tables])
    what = "one per process row"
    raw_window, raw_pid, raw_sm, raw_key = [], [], [], []
    for _, table, path, rows in tables:
        raw_window.extend(table["window"])
        raw_pid.extend(_optional_column(table, "pid", path, rows, what))
        raw_sm.extend(_optional_column(table, "sm_util_pct", path, rows, what))
        raw_key.extend(_optional_column(table, "job_key", path, rows, what))
    named = {key: _table_path(tables, segments, key) for key in ("window", "pid", "sm_util_pct", "job_key")}
    window, _ = _ints(raw_window, named["window"])
    gpu_length = np.repeat(
        np.array([devices[j].length for j, _, _, _ in tables], dtype=np.int64), np.diff(segments.offsets)
    )
    bad = window >= gpu_length
    if bad.any():
        i = _first(bad)
        raise _bad(named["window"](i), f"must be between 0 and {int(gpu_length[i]) - 1}")
    # Rows in window order within a table; the tables' GPU windows follow each other.
    position = window + np.repeat(offsets[[j for j, _, _, _ in tables]], np.diff(segments.offsets))
    bad = np.diff(position) < 0
    if bad.any():
        raise _bad(named["window"](_first(bad) + 1), "must be non-decreasing (rows in window order)")
    counts = np.bincount(position, minlength=total)
    if counts.max() > MAX_PROCESSES:
        i = int(np.searchsorted(position, int(np.flatnonzero(counts > MAX_PROCESSES)[0])))
        raise _bad(named["window"](i), f"at most {MAX_PROCESSES} processes per GPU window")
    pid, pid_null = _ints(raw_pid, named["pid"], nullable=True)
    sm, sm_null = _floats(raw_sm, named["sm_util_pct"], maximum=100.0, nullable=True)
    job_key = _job_keys(raw_key, named["job_key"])
    assert pid_null is not None and sm_null is not None
    samples = zip(position.tolist(), _nullable_list(pid, pid_null), _nullable_list(sm, sm_null), job_key, strict=True)
    for w, p, u, k in samples:
        per_window[w].append({"pid": p, "sm_util_pct": u, "job_key": k})
    return per_window


def _table_path(tables: list[tuple[int, dict[str, Any], str, int]], segments: _Segments, key: str) -> Path:
    def name(i: int) -> str:
        t = int(np.searchsorted(segments.offsets, i, side="right")) - 1
        return f"{tables[t][2]}.{key}[{i - int(segments.offsets[t])}]"

    return name


_GPU_FLOATS = (
    ("energy_j", None),
    ("avg_power_w", MAX_GPU_POWER_W),
    ("max_power_w", MAX_GPU_POWER_W),
    ("util_pct", 100.0),
    ("mem_util_pct", 100.0),
)


def parse_batch_v2(
    *, data: Any, now: dt.datetime, clock_skew_s: float, retention_days: int, max_windows: int
) -> ParsedBatch:
    """Validate a decoded v2 batch; raise BatchError naming the first offending element.

    Each column is checked once for the whole batch: the GPUs' columns are concatenated, and an
    error is traced back to its GPU and element."""
    root = _obj(data, "body")
    if root.get("format") != FORMAT:
        raise _bad("format", "must be 2 for this parser")
    batch_id, hostname, agent_version, sent_at = parse_header(root)
    seq, start_us, end_us = _window_columns(root, now, clock_skew_s, retention_days)
    batch = ParsedBatch(batch_id=batch_id, hostname=hostname, agent_version=agent_version, sent_at=sent_at)
    batch.host_rows = _host_rows(root, seq, start_us, end_us)
    n = int(seq.shape[0])

    gpus = root.get("gpus")
    if not isinstance(gpus, list):
        raise _bad("gpus", "must be a list")
    devices: list[_Device] = []
    seen: set[str] = set()
    gpu_windows = 0
    for j, raw_gpu in enumerate(gpus):
        device = _Device(_obj(raw_gpu, f"gpus[{j}]"), f"gpus[{j}]", n, seen)
        gpu_windows += device.length
        if gpu_windows > max_windows:
            raise BatchError(413, "gpus", f"a batch may carry at most {max_windows} GPU windows")
        devices.append(device)
    if not devices:
        batch.series = []
        return batch
    segments = _Segments([d.length for d in devices])
    floats = {
        key: _floats(_concat(devices, key), segments.path(key), maximum=maximum)[0] for key, maximum in _GPU_FLOATS
    }
    counter_mj, counter_null = _ints(
        _concat(devices, "counter_mj", optional=True), segments.path("counter_mj"), nullable=True
    )
    power_limit_w, limit_null = _floats(
        _concat(devices, "power_limit_w", optional=True),
        segments.path("power_limit_w"),
        maximum=MAX_GPU_POWER_W,
        nullable=True,
    )
    # Memory in use: null where the agent could not read it (stored as NaN, "not reported").
    mem_used_mib, mem_null = _floats(
        _concat(devices, "mem_used_mib", optional=True), segments.path("mem_used_mib"), nullable=True
    )
    assert mem_null is not None
    floats["mem_used_mib"] = np.where(mem_null, np.nan, mem_used_mib)
    quality = _qualities(_concat(devices, "quality"), segments.path("quality"))
    assert counter_null is not None and limit_null is not None
    # Each GPU window's batch window.
    window = np.concatenate(
        [np.arange(n, dtype=np.int64) if d.window_index is None else d.window_index for d in devices]
    )
    span_s = (end_us - start_us)[window] / 1e6
    # A GPU cannot draw more than 5 kW: an energy implying more is a unit error (mJ sent as J).
    energy_j = floats["energy_j"]
    bad = energy_j > MAX_GPU_POWER_W * span_s
    if bad.any():
        i = _first(bad)
        raise _bad(
            segments.path("energy_j")(i), f"{energy_j[i]:g} J in {span_s[i]:g} s implies over 5 kW; check units (J)"
        )
    # A module counter covering the CPU and memory (Grace): no modelled host CPU/DRAM on top.
    modules = [j for j, d in enumerate(devices) if "cpu" in d.energy_covers]
    if modules:
        modelled = np.array(
            [h.quality == "modelled" and h.cpu_energy_j + h.dram_energy_j > 0.0 for h in batch.host_rows]
        )
        for j in modules:
            device = devices[j]
            hits = modelled if device.window_index is None else modelled[device.window_index]
            if hits.any():
                k = _first(hits)
                w = k if device.window_index is None else int(device.window_index[k])
                raise _bad(
                    f"host.cpu_energy_j[{w}]",
                    f"gpus[{j}] has a module energy counter covering the CPU and memory "
                    f"({device.energy_covers}); a modelled CPU/DRAM figure on top would count them twice",
                )
    processes = _processes(devices, segments.offsets, gpu_windows)

    split = {key: segments.split(array) for key, array in floats.items()}
    seqs, starts, ends = segments.split(seq[window]), segments.split(start_us[window]), segments.split(end_us[window])
    counters, has_counter = segments.split(counter_mj), segments.split(~counter_null)
    limits = segments.split(np.where(limit_null, np.nan, power_limit_w))
    series = []
    for j, device in enumerate(devices):
        part = segments.slices[j]
        device_processes = processes[part]
        series.append(
            GpuSeries(
                uuid=device.uuid,
                index=device.index,
                name=device.name,
                energy_covers=device.energy_covers,
                seq=seqs[j],
                start_us=starts[j],
                end_us=ends[j],
                energy_j=split["energy_j"][j],
                counter_mj=counters[j],
                has_counter=has_counter[j],
                avg_power_w=split["avg_power_w"][j],
                max_power_w=split["max_power_w"][j],
                util_pct=split["util_pct"][j],
                mem_util_pct=split["mem_util_pct"][j],
                mem_used_mib=split["mem_used_mib"][j],
                power_limit_w=limits[j],
                quality=tuple(quality[part]),
                processes=tuple(device_processes),
                mig_instances=_mig_per_window(
                    device.entry.get("mig_instances"), f"{device.path}.mig_instances", device.length, device_processes
                ),
            )
        )
    batch.series = series
    return batch


def parse_any(
    *, data: Any, now: dt.datetime, clock_skew_s: float, retention_days: int, max_windows: int
) -> ParsedBatch:
    """A decoded batch of either format: ``"format": 2`` is v2, no ``format`` (or 1) is v1."""
    fmt = data.get("format") if isinstance(data, dict) else None
    if fmt is not None and (isinstance(fmt, bool) or fmt not in (1, FORMAT)):
        raise _bad("format", "must be 1 (or absent) or 2")
    parse = parse_batch_v2 if fmt == FORMAT else parse_batch
    return parse(data=data, now=now, clock_skew_s=clock_skew_s, retention_days=retention_days, max_windows=max_windows)
