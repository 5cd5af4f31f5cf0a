"""The columnar wire format v2 (docs/wire-format.md, "Format 2") built from v1 windows, in plain
Python (the agent has no numpy).

The spool keeps windows in their v1 form (a window as the builder closed it, plus its seq), so
batches spooled by an older agent convert the same way. ``columns_v2`` returns None for windows
that v2 cannot carry exactly (a GPU whose index, name or energy_covers changes within the batch,
a malformed window, a time that is not ISO 8601 with an offset): the sender then sends that
batch as v1, which carries anything and lets the server name the problem.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

FORMAT = 2
# The agent's ``wire_format`` setting: "v2" (the default) or "v1" (one JSON object per window).
WIRE_FORMATS = ("v2", "v1")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
HOST_COLUMNS = ("cpu_energy_j", "dram_energy_j", "wall_energy_j", "cpu_util_pct", "quality")
GPU_COLUMNS = (
    "energy_j",
    "counter_mj",
    "avg_power_w",
    "max_power_w",
    "util_pct",
    "mem_util_pct",
    "mem_used_mib",
    "power_limit_w",
    "quality",
)
# Columns sent only when some window has a value (omitted: null in every window).
OPTIONAL_COLUMNS = frozenset({"wall_energy_j", "counter_mj", "power_limit_w", "mem_used_mib"})
_DEVICE_FIELDS = ("index", "name", "energy_covers")


def iso_to_us(value: Any) -> int | None:
    """An ISO 8601 time with an offset as integer microseconds since the epoch (exact); None if
    it is not one."""
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        return None
    delta: timedelta = parsed - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def _runs(values: list[Any]) -> list[list[Any]]:
    """Run-length pairs [count, value] of consecutive equal values (equal as text too: 1 and
    1.0, or 1 and true, are not merged)."""
    runs: list[list[Any]] = []
    for value in values:
        if runs and runs[-1][1] == value and str(runs[-1][1]) == str(value):
            runs[-1][0] += 1
        else:
            runs.append([1, value])
    return runs


_INEXACT: dict[str, Any] = {}


def _process_columns(per_window: list[Any]) -> dict[str, Any] | None:
    """A GPU's processes as columns, one row per process and window (``window`` is the position
    among the GPU's windows); None when there are none; ``_INEXACT`` when v1 is needed."""
    window: list[int] = []
    columns: dict[str, list[Any]] = {"pid": [], "sm_util_pct": [], "job_key": []}
    for position, processes in enumerate(per_window):
        if processes is None:
            continue
        if type(processes) is not list:
            return _INEXACT
        for proc in processes:
            if type(proc) is not dict:
                return _INEXACT
            window.append(position)
            for key, column in columns.items():
                column.append(proc.get(key))
    if not window:
        return None
    out: dict[str, Any] = {"window": window}
    for key, column in columns.items():
        if any(value is not None for value in column):
            out[key] = column
    return out


class _Gpu:
    __slots__ = ("device", "mig", "positions", "processes", "values")

    def __init__(self, device: tuple[Any, ...]) -> None:
        self.device = device
        self.positions: list[int] = []
        self.values: dict[str, list[Any]] = {key: [] for key in GPU_COLUMNS}
        self.processes: list[Any] = []
        self.mig: list[Any] = []


def columns_v2(windows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The v2 members ``windows``, ``host`` and ``gpus`` for v1 windows (with their seq), or None
    when they cannot be carried exactly in v2."""
    if not windows:
        return None
    seq: list[Any] = []
    start_us: list[int] = []
    end_us: list[int] = []
    host: dict[str, list[Any]] = {key: [] for key in HOST_COLUMNS}
    gpus: dict[str, _Gpu] = {}
    for position, window in enumerate(windows):
        if type(window) is not dict:
            return None
        start, end = iso_to_us(window.get("start")), iso_to_us(window.get("end"))
        raw_host, raw_gpus = window.get("host"), window.get("gpus")
        if start is None or end is None or type(raw_host) is not dict or type(raw_gpus) is not list:
            return None
        seq.append(window.get("seq"))
        start_us.append(start)
        end_us.append(end)
        for key in HOST_COLUMNS:
            host[key].append(raw_host.get(key))
        for raw in raw_gpus:
            if type(raw) is not dict or type(raw.get("uuid")) is not str:
                return None
            covers = raw.get("energy_covers")
            device = (raw.get("index"), raw.get("name"), "gpu" if covers is None else covers)
            gpu = gpus.get(raw["uuid"])
            if gpu is None:
                gpu = gpus[raw["uuid"]] = _Gpu(device)
            elif repr(gpu.device) != repr(device) or gpu.positions[-1] == position:
                return None  # its device fields changed within the batch, or it is twice in a window
            gpu.positions.append(position)
            for key, column in gpu.values.items():
                column.append(raw.get(key))
            gpu.processes.append(raw.get("processes"))
            gpu.mig.append(raw.get("mig_instances"))
    host_columns: dict[str, Any] = {}
    for key, column in host.items():
        if key not in OPTIONAL_COLUMNS or any(value is not None for value in column):
            host_columns[key] = column
    gpu_entries = []
    for gpu_uuid, gpu in gpus.items():
        index, name, energy_covers = gpu.device
        entry: dict[str, Any] = {"uuid": gpu_uuid, "index": index}
        if name is not None:
            entry["name"] = name
        if energy_covers != "gpu":
            entry["energy_covers"] = energy_covers
        if len(gpu.positions) != len(windows):
            entry["window_index"] = gpu.positions
        for key, column in gpu.values.items():
            if key not in OPTIONAL_COLUMNS or any(value is not None for value in column):
                entry[key] = column
        processes = _process_columns(gpu.processes)
        if processes is _INEXACT:
            return None
        if processes is not None:
            entry["processes"] = processes
        if any(value is not None for value in gpu.mig):
            entry["mig_instances"] = _runs(gpu.mig)
        gpu_entries.append(entry)
    return {
        "windows": {"seq": seq, "start_us": start_us, "end_us": end_us},
        "host": host_columns,
        "gpus": gpu_entries,
    }


def us_to_iso(micros: int) -> str:
    """Integer microseconds since the epoch as the agent writes times (milliseconds, ``Z``)."""
    value = _EPOCH + timedelta(microseconds=micros)
    return value.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def windows_v1(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """The v1 windows a well-formed v2 body carries, times as the agent writes them (for tools and
    loopback test servers; ``columns_v2`` inverted for windows the agent built)."""
    columns, host = doc["windows"], doc["host"]
    n = len(columns["seq"])
    windows: list[dict[str, Any]] = []
    for i in range(n):
        window_host = {key: host[key][i] if host.get(key) is not None else None for key in HOST_COLUMNS}
        windows.append(
            {
                "seq": columns["seq"][i],
                "start": us_to_iso(columns["start_us"][i]),
                "end": us_to_iso(columns["end_us"][i]),
                "host": window_host,
                "gpus": [],
            }
        )
    for gpu in doc["gpus"]:
        positions = gpu.get("window_index") or list(range(n))
        processes: list[list[dict[str, Any]]] = [[] for _ in positions]
        table = gpu.get("processes")
        if table:
            for row, position in enumerate(table["window"]):
                processes[position].append(
                    {
                        key: table[key][row] if table.get(key) is not None else None
                        for key in ("pid", "sm_util_pct", "job_key")
                    }
                )
        mig: list[Any] = []
        for count, instances in gpu.get("mig_instances") or []:
            mig.extend([instances] * count)
        for k, position in enumerate(positions):
            entry: dict[str, Any] = {"uuid": gpu["uuid"], "index": gpu["index"]}
            if "name" in gpu:
                entry["name"] = gpu["name"]
            for key in GPU_COLUMNS:
                entry[key] = gpu[key][k] if gpu.get(key) is not None else None
            entry["processes"] = processes[k]
            if "energy_covers" in gpu:
                entry["energy_covers"] = gpu["energy_covers"]
            if mig:
                entry["mig_instances"] = mig[k]
            windows[position]["gpus"].append(entry)
    return windows
