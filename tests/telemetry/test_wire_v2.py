"""Wire format v2 (docs/wire-format.md, "Format 2"): the same windows as v1 give the same series,
stored rows and ledger; every validation rule refuses with the element's path; any valid v1
batch converted to v2 parses to the same series; the agent's v2 body is accepted."""

from __future__ import annotations

import datetime as dt
import gzip
import json
import math
import uuid

import numpy as np
import pytest
from django.db import connection, transaction
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from accounting.domain.timebase import to_us
from accounting.models import ApiToken
from accounting.tokens import token_create
from telemetry.agent.spool import Batch
from telemetry.agent.wire import columns_v2, iso_to_us, windows_v1
from telemetry.models import TelemetryBatch
from telemetry.parsing import BatchError, GpuRow, parse_batch
from telemetry.series import GpuSeries
from telemetry.wire_v2 import parse_any, parse_batch_v2
from tests.factories import DeviceFactory, HostFactory, JobAllocationFactory, JobFactory
from tests.telemetry.helpers import INGEST_URL, batch, gpu_entry, post_batch, stored_counts, to_v2, window

NOW = dt.datetime(2026, 11, 26, 12, 0, tzinfo=dt.UTC)
T0 = NOW - dt.timedelta(hours=1)
T0_US = to_us(T0)
S = 1_000_000  # µs per second
LIMITS = {"clock_skew_s": 300.0, "retention_days": 90, "max_windows": 10_000}
GPU_A = "GPU-5c3c6e2e-0000-4000-8000-00000000000a"
GPU_B = "GPU-5c3c6e2e-0000-4000-8000-00000000000b"
SERIES_ARRAYS = (
    "seq",
    "start_us",
    "end_us",
    "energy_j",
    "counter_mj",
    "has_counter",
    "avg_power_w",
    "max_power_w",
    "util_pct",
    "mem_util_pct",
    "mem_used_mib",
    "power_limit_w",
)


def base_doc() -> dict:
    """Three 10 s windows; GPU A in all of them, GPU B (MIG) in windows 0 and 2."""
    return {
        "format": 2,
        "batch_id": "1b4e28ba-2fa1-11d2-883f-0016d3cca427",
        "hostname": "gpu-node-07",
        "agent_version": "0.2.0",
        "sent_at": "2026-11-26T11:00:31.000Z",
        "windows": {
            "seq": [41, 42, 43],
            "start_us": [T0_US, T0_US + 10 * S, T0_US + 20 * S],
            "end_us": [T0_US + 10 * S, T0_US + 20 * S, T0_US + 30 * S],
        },
        "host": {
            "cpu_energy_j": [1450.0, 1460.5, 1440],
            "dram_energy_j": [210.0, 211.0, 209.0],
            "wall_energy_j": [None, 9000.0, None],
            "cpu_util_pct": [35.0, 36.0, 34.5],
            "quality": ["measured", "measured", "modelled"],
        },
        "gpus": [
            {
                "uuid": GPU_A,
                "index": 0,
                "name": "NVIDIA H100 80GB HBM3",
                "energy_j": [6500.0, 6400.25, 6600],
                "counter_mj": [123456789000, None, 123469889250],
                "avg_power_w": [650.0, 640.025, 660.0],
                "max_power_w": [690.0, 680.0, 700.0],
                "util_pct": [97.0, 96.5, 98.0],
                "mem_util_pct": [60.0, 61.0, 59.0],
                "mem_used_mib": [71000.0, 71000.0, 71100.0],
                "power_limit_w": [700.0, 700.0, None],
                "quality": ["measured", "measured", "integrated"],
                "processes": {
                    "window": [0, 1, 1, 2],
                    "pid": [4242, 4242, 4243, None],
                    "sm_util_pct": [97.0, 60.0, None, 98.0],
                    "job_key": ["slurm:88123", "slurm:88123", None, "k8s:6f1d"],
                },
            },
            {
                "uuid": GPU_B,
                "index": 1,
                "window_index": [0, 2],
                "energy_j": [3200.0, 3100.0],
                "avg_power_w": [320.0, 310.0],
                "max_power_w": [350.0, 340.0],
                "util_pct": [50.0, 40.0],
                "mem_util_pct": [20.0, 10.0],
                "mem_used_mib": [20000.0, 19000.0],
                "quality": ["measured", "measured"],
                "processes": {"window": [0, 1], "pid": [7, 7], "job_key": ["slurm:1", "slurm:1"]},
                "mig_instances": [
                    [2, [{"gpu_instance_id": 1, "profile": "3g.40gb", "activity": 0.8125, "pids": [7]}]],
                ],
            },
        ],
    }


def parse(doc, **limits):
    return parse_batch_v2(data=doc, now=NOW, **{**LIMITS, **limits})


def assert_same_series(a: list[GpuSeries], b: list[GpuSeries]) -> None:
    assert [(s.uuid, s.index, s.name, s.energy_covers) for s in a] == [
        (s.uuid, s.index, s.name, s.energy_covers) for s in b
    ]
    for x, y in zip(a, b, strict=True):
        for name in SERIES_ARRAYS:
            ax, ay = getattr(x, name), getattr(y, name)
            assert ax.dtype == ay.dtype, name
            assert np.array_equal(ax, ay, equal_nan=True), name
        assert x.quality == y.quality
        assert x.processes == y.processes
        assert x.mig_instances == y.mig_instances


# --- parsing -------------------------------------------------------------------------------------


def test_a_v2_batch_parses_to_one_series_per_gpu_with_exact_values():
    parsed = parse(base_doc())
    assert parsed.batch_id == uuid.UUID("1b4e28ba-2fa1-11d2-883f-0016d3cca427")
    assert (parsed.hostname, parsed.agent_version) == ("gpu-node-07", "0.2.0")
    assert parsed.sent_at == dt.datetime(2026, 11, 26, 11, 0, 31, tzinfo=dt.UTC)
    assert [(h.seq, h.start, h.cpu_energy_j, h.wall_energy_j, h.quality) for h in parsed.host_rows] == [
        (41, T0, 1450.0, None, "measured"),
        (42, T0 + dt.timedelta(seconds=10), 1460.5, 9000.0, "measured"),
        (43, T0 + dt.timedelta(seconds=20), 1440.0, None, "modelled"),
    ]
    a, b = parsed.series
    assert (a.uuid, a.index, a.name, a.energy_covers, len(a)) == (GPU_A, 0, "NVIDIA H100 80GB HBM3", "gpu", 3)
    assert a.seq.tolist() == [41, 42, 43]
    assert a.energy_j.dtype == np.float64 and a.energy_j.tolist() == [6500.0, 6400.25, 6600.0]
    assert a.counter_mj.tolist() == [123456789000, 0, 123469889250]
    assert a.has_counter.tolist() == [True, False, True]
    assert a.power_limit_w[:2].tolist() == [700.0, 700.0] and math.isnan(a.power_limit_w[2])
    assert a.quality == ("measured", "measured", "integrated")
    assert a.processes == (
        [{"pid": 4242, "sm_util_pct": 97.0, "job_key": "slurm:88123"}],
        [
            {"pid": 4242, "sm_util_pct": 60.0, "job_key": "slurm:88123"},
            {"pid": 4243, "sm_util_pct": None, "job_key": None},
        ],
        [{"pid": None, "sm_util_pct": 98.0, "job_key": "k8s:6f1d"}],
    )
    assert a.mig_instances == ([], [], [])
    assert (b.name, b.seq.tolist(), b.start_us.tolist()) == ("", [41, 43], [T0_US, T0_US + 20 * S])
    assert b.has_counter.tolist() == [False, False] and np.isnan(b.power_limit_w).all()
    mig = {
        "uuid": None,
        "gpu_instance_id": 1,
        "compute_instance_id": None,
        "profile": "3g.40gb",
        "slices": 3,
        "activity": 0.8125,
        "mem_used_mib": None,
        "job_keys": ["slurm:1"],
    }
    assert b.mig_instances == ([mig], [mig])
    assert b.mig_instances[0] is b.mig_instances[1]  # one normalisation for the run


def test_gpu_rows_of_a_v2_batch_are_derived_from_its_series_in_window_order():
    parsed = parse(base_doc())
    assert parsed.rows is None  # nothing per GPU window was built
    rows = parsed.gpu_rows
    assert [(r.seq, r.uuid) for r in rows] == [(41, GPU_A), (41, GPU_B), (42, GPU_A), (43, GPU_A), (43, GPU_B)]
    assert rows[2] == GpuRow(
        uuid=GPU_A,
        index=0,
        name="NVIDIA H100 80GB HBM3",
        seq=42,
        start=T0 + dt.timedelta(seconds=10),
        end=T0 + dt.timedelta(seconds=20),
        energy_j=6400.25,
        counter_mj=None,
        avg_power_w=640.025,
        max_power_w=680.0,
        util_pct=96.5,
        mem_util_pct=61.0,
        mem_used_mib=71000.0,
        power_limit_w=700.0,
        quality="measured",
        processes=[
            {"pid": 4242, "sm_util_pct": 60.0, "job_key": "slurm:88123"},
            {"pid": 4243, "sm_util_pct": None, "job_key": None},
        ],
        mig_instances=[],
        energy_covers="gpu",
    )
    assert parsed.gpu_rows is rows


def test_v1_and_v2_of_the_same_windows_parse_to_identical_series_and_rows():
    v1 = {
        **{k: v for k, v in base_doc().items() if k not in ("format", "windows", "host", "gpus")},
        "windows": windows_v1(base_doc()),
    }
    from_v1 = parse_batch(data=v1, now=NOW, **LIMITS)
    from_v2 = parse(base_doc())
    assert_same_series(from_v1.gpu_series, from_v2.gpu_series)
    assert from_v1.gpu_rows == from_v2.gpu_rows
    assert from_v1.host_rows == from_v2.host_rows


def test_unknown_members_are_ignored_as_v1_ignores_them():
    doc = base_doc()
    doc["extra"] = {"anything": 1}
    doc["windows"]["extra"] = [1, 2, 3]
    doc["host"]["cpu_dram_in_gpu_modules"] = [False, False, False]
    doc["gpus"][0]["temperature_c"] = [60, 61, 62]
    doc["gpus"][0]["processes"]["container"] = ["a", "b", "c", "d"]
    assert_same_series(parse(doc).series, parse(base_doc()).series)


def test_nullable_columns_may_be_omitted_and_a_gpu_may_have_no_processes():
    doc = base_doc()
    for key in ("counter_mj", "power_limit_w", "processes"):
        del doc["gpus"][0][key]
    del doc["host"]["wall_energy_j"]
    parsed = parse(doc)
    a = parsed.series[0]
    assert a.has_counter.tolist() == [False, False, False] and np.isnan(a.power_limit_w).all()
    assert a.processes == ([], [], [])
    assert [h.wall_energy_j for h in parsed.host_rows] == [None, None, None]


def test_memory_the_agent_could_not_read_is_null_and_stored_as_not_reported():
    """The agent sends ``mem_used_mib: null`` when NVML cannot read a GPU's memory in a window;
    both formats accept it (it was a 400 naming the field: such a host's every batch refused),
    kept as NaN in the series and None in the rows; the energy is unaffected."""
    doc = base_doc()
    doc["gpus"][0]["mem_used_mib"][1] = None
    a = parse(doc).gpu_series[0]
    assert np.isnan(a.mem_used_mib[1]) and a.mem_used_mib[0] == 71000.0
    rows = parse(doc).gpu_rows
    assert [r.mem_used_mib for r in rows if r.uuid == a.uuid] == [71000.0, None, 71100.0]
    del doc["gpus"][0]["mem_used_mib"]
    assert np.isnan(parse(doc).gpu_series[0].mem_used_mib).all()
    v1 = batch(
        hostname="gpu-node-07",
        windows=[window(seq=1, start=NOW - dt.timedelta(minutes=5), gpus=[gpu_entry(uuid_="GPU-a", index=0)])],
    )
    v1["windows"][0]["gpus"][0]["mem_used_mib"] = None
    parsed = parse_batch(data=v1, now=NOW, **LIMITS)
    assert parsed.gpu_rows[0].mem_used_mib is None
    assert np.isnan(parsed.gpu_series[0].mem_used_mib[0])


def test_format_selects_the_parser():
    v1 = batch(hostname="h", windows=[window(seq=1, start=T0, gpus=[gpu_entry(uuid_=GPU_A)])])
    assert len(parse_any(data=v1, now=NOW, **LIMITS).gpu_rows) == 1
    assert len(parse_any(data={**v1, "format": 1}, now=NOW, **LIMITS).gpu_rows) == 1
    assert len(parse_any(data=base_doc(), now=NOW, **LIMITS).gpu_rows) == 5
    for bad in (3, "2", True):
        with pytest.raises(BatchError) as err:
            parse_any(data={**v1, "format": bad}, now=NOW, **LIMITS)
        assert (err.value.status, err.value.field, err.value.message) == (400, "format", "must be 1 (or absent) or 2")
    with pytest.raises(BatchError) as err:
        parse_batch(data=base_doc(), now=NOW, **LIMITS)
    assert err.value.field == "format"


# --- one case per rule: (mutation, status, field path, message) ---------------------------------


def _set(path: str, value):
    """A mutation setting doc[a][b]... (digits index lists); ``_DELETE`` removes the member."""

    def mutate(doc):
        keys = [int(k) if k.isdigit() else k for k in path.split("/")]
        target = doc
        for key in keys[:-1]:
            target = target[key]
        if value is _DELETE:
            del target[keys[-1]]
        else:
            target[keys[-1]] = value

    return mutate


_DELETE = object()


def _too_many_processes(doc):
    doc["gpus"][0]["processes"] = {"window": [0] + [1] * 257 + [2], "pid": list(range(259))}


def _future(doc):
    doc["windows"]["start_us"][2] = to_us(NOW) + 291 * S
    doc["windows"]["end_us"][2] = to_us(NOW) + 301 * S


def _too_old(doc):
    doc["windows"]["start_us"][0] = to_us(NOW - dt.timedelta(days=90, seconds=1))
    doc["windows"]["end_us"][0] = doc["windows"]["start_us"][0] + 10 * S


def _module_counter(doc):
    doc["gpus"][1]["energy_covers"] = "gpu+cpu+memory"


RULES = [
    (
        "body-object",
        lambda d: d.clear() or d.update({"format": 2, "batch_id": 5}),
        400,
        "batch_id",
        "must be a UUID string",
    ),
    ("hostname", _set("hostname", _DELETE), 400, "body.hostname", "is required"),
    ("hostname-length", _set("hostname", "h" * 254), 400, "body.hostname", "must be at most 253 characters"),
    ("sent_at", _set("sent_at", "yesterday"), 400, "body.sent_at", "'yesterday' is not an ISO 8601 timestamp"),
    ("windows-object", _set("windows", [1]), 400, "windows", "must be an object of columns (seq, start_us, end_us)"),
    ("seq-empty", _set("windows/seq", []), 400, "windows.seq", "must be a non-empty list"),
    ("seq-integer", _set("windows/seq/1", 42.0), 400, "windows.seq[1]", "must be an integer"),
    ("seq-bool", _set("windows/seq/0", True), 400, "windows.seq[0]", "must be an integer"),
    ("seq-negative", _set("windows/seq/0", -1), 400, "windows.seq[0]", "must be between 0 and 2^63-1"),
    ("seq-range", _set("windows/seq/2", 2**63), 400, "windows.seq[2]", "must be between 0 and 2^63-1"),
    ("seq-order", _set("windows/seq/2", 42), 400, "windows.seq[2]", "windows must be in strictly increasing seq order"),
    (
        "column-length",
        _set("windows/start_us", [T0_US, T0_US + 10 * S]),
        400,
        "windows.start_us",
        "must have 3 elements (one per window), has 2",
    ),
    ("column-missing", _set("windows/end_us", _DELETE), 400, "windows.end_us", "is required"),
    ("end-after-start", _set("windows/end_us/1", T0_US + 10 * S), 400, "windows.end_us[1]", "must be after start"),
    ("span", _set("windows/end_us/0", T0_US + 3601 * S), 400, "windows.end_us[0]", "a window may span at most 3600 s"),
    (
        "future",
        _future,
        400,
        "windows.end_us[2]",
        "is in the future beyond the 300 s clock-skew allowance",
    ),
    (
        "too-old",
        _too_old,
        400,
        "windows.start_us[0]",
        "is older than the 90-day raw telemetry retention",
    ),
    ("overlap", _set("windows/start_us/1", T0_US + 9 * S), 400, "windows.start_us[1]", "overlaps the previous window"),
    ("host-object", _set("host", _DELETE), 400, "host", "must be an object"),
    ("host-negative", _set("host/cpu_energy_j/1", -0.5), 400, "host.cpu_energy_j[1]", "must be >= 0"),
    ("host-util", _set("host/cpu_util_pct/0", 100.5), 400, "host.cpu_util_pct[0]", "must be <= 100"),
    (
        "host-nan",
        _set("host/dram_energy_j/2", float("nan")),
        400,
        "host.dram_energy_j[2]",
        "must be finite (no NaN or infinity)",
    ),
    ("host-null", _set("host/dram_energy_j/1", None), 400, "host.dram_energy_j[1]", "is required"),
    ("host-string", _set("host/wall_energy_j/1", "9000"), 400, "host.wall_energy_j[1]", "must be a number"),
    (
        "host-quality",
        _set("host/quality/1", "guessed"),
        400,
        "host.quality[1]",
        "must be one of ['integrated', 'interpolated', 'measured', 'modelled']",
    ),
    ("gpus-list", _set("gpus", {}), 400, "gpus", "must be a list"),
    ("gpu-object", _set("gpus/1", "GPU-b"), 400, "gpus[1]", "must be an object"),
    ("gpu-uuid", _set("gpus/1/uuid", GPU_A), 400, "gpus[1].uuid", "appears twice in the batch (one entry per GPU)"),
    ("gpu-uuid-length", _set("gpus/0/uuid", "G" * 101), 400, "gpus[0].uuid", "must be at most 100 characters"),
    ("gpu-index", _set("gpus/0/index", True), 400, "gpus[0].index", "must be an integer"),
    ("gpu-index-range", _set("gpus/1/index", 2**31), 400, "gpus[1].index", "must be between 0 and 2147483647"),
    ("gpu-name", _set("gpus/0/name", " "), 400, "gpus[0].name", "must be a non-empty string"),
    (
        "energy-covers",
        _set("gpus/0/energy_covers", "board"),
        400,
        "gpus[0].energy_covers",
        "must be one of ['gpu', 'gpu+cpu+memory', 'gpu+memory']",
    ),
    (
        "window-index-range",
        _set("gpus/1/window_index", [0, 3]),
        400,
        "gpus[1].window_index[1]",
        "must be between 0 and 2",
    ),
    (
        "window-index-order",
        _set("gpus/1/window_index", [2, 0]),
        400,
        "gpus[1].window_index[1]",
        "must be strictly increasing",
    ),
    ("window-index-empty", _set("gpus/1/window_index", []), 400, "gpus[1].window_index", "must be a non-empty list"),
    (
        "gpu-column-length",
        _set("gpus/1/energy_j", [1.0, 2.0, 3.0]),
        400,
        "gpus[1].energy_j",
        "must have 2 elements (one per window of this GPU), has 3",
    ),
    ("gpu-column-missing", _set("gpus/0/util_pct", _DELETE), 400, "gpus[0].util_pct", "is required"),
    ("energy-negative", _set("gpus/1/energy_j/1", -1.0), 400, "gpus[1].energy_j[1]", "must be >= 0"),
    (
        "energy-infinite",
        _set("gpus/0/energy_j/0", float("inf")),
        400,
        "gpus[0].energy_j[0]",
        "must be finite (no NaN or infinity)",
    ),
    (
        "energy-5kw",
        _set("gpus/0/energy_j/2", 60000.0),
        400,
        "gpus[0].energy_j[2]",
        "60000 J in 10 s implies over 5 kW; check units (J)",
    ),
    ("power-bound", _set("gpus/1/avg_power_w/0", 5000.5), 400, "gpus[1].avg_power_w[0]", "must be <= 5000"),
    ("power-bool", _set("gpus/0/max_power_w/1", False), 400, "gpus[0].max_power_w[1]", "must be a number"),
    ("util-bound", _set("gpus/1/util_pct/0", 101.0), 400, "gpus[1].util_pct[0]", "must be <= 100"),
    ("mem-util-bound", _set("gpus/0/mem_util_pct/2", 100.01), 400, "gpus[0].mem_util_pct[2]", "must be <= 100"),
    ("counter-integer", _set("gpus/0/counter_mj/0", 1.5), 400, "gpus[0].counter_mj[0]", "must be an integer"),
    ("counter-negative", _set("gpus/0/counter_mj/2", -5), 400, "gpus[0].counter_mj[2]", "must be between 0 and 2^63-1"),
    (
        "limit-nan",
        _set("gpus/0/power_limit_w/1", float("nan")),
        400,
        "gpus[0].power_limit_w[1]",
        "must be finite (no NaN or infinity)",
    ),
    (
        "gpu-quality",
        _set("gpus/1/quality/1", ["measured"]),
        400,
        "gpus[1].quality[1]",
        "must be one of ['integrated', 'interpolated', 'measured', 'modelled']",
    ),
    ("processes-object", _set("gpus/0/processes", [[1, []]]), 400, "gpus[0].processes", "must be an object"),
    (
        "processes-window",
        _set("gpus/1/processes/window/1", 2),
        400,
        "gpus[1].processes.window[1]",
        "must be between 0 and 1",
    ),
    (
        "processes-order",
        _set("gpus/0/processes/window", [0, 2, 1, 2]),
        400,
        "gpus[0].processes.window[2]",
        "must be non-decreasing (rows in window order)",
    ),
    (
        "processes-length",
        _set("gpus/0/processes/pid", [1, 2]),
        400,
        "gpus[0].processes.pid",
        "must have 4 elements (one per process row), has 2",
    ),
    (
        "processes-pid",
        _set("gpus/1/processes/pid/0", -7),
        400,
        "gpus[1].processes.pid[0]",
        "must be between 0 and 2^63-1",
    ),
    (
        "processes-sm",
        _set("gpus/0/processes/sm_util_pct/3", 100.5),
        400,
        "gpus[0].processes.sm_util_pct[3]",
        "must be <= 100",
    ),
    (
        "processes-job-key",
        _set("gpus/0/processes/job_key/2", "k" * 201),
        400,
        "gpus[0].processes.job_key[2]",
        "must be a string of at most 200 characters or null",
    ),
    (
        "processes-count",
        _too_many_processes,
        400,
        "gpus[0].processes.window[1]",
        "at most 256 processes per GPU window",
    ),
    (
        "mig-runs",
        _set("gpus/1/mig_instances", {"1": []}),
        400,
        "gpus[1].mig_instances",
        "must be a list of [count, list] runs",
    ),
    ("mig-pair", _set("gpus/1/mig_instances/0", [2]), 400, "gpus[1].mig_instances[0]", "must be a [count, list] pair"),
    ("mig-count", _set("gpus/1/mig_instances/0/0", 0), 400, "gpus[1].mig_instances[0][0]", "must be an integer >= 1"),
    (
        "mig-over",
        _set("gpus/1/mig_instances/0/0", 3),
        400,
        "gpus[1].mig_instances[0][0]",
        "the runs cover more than the GPU's 2 windows",
    ),
    (
        "mig-under",
        _set("gpus/1/mig_instances/0/0", 1),
        400,
        "gpus[1].mig_instances",
        "the runs cover 1 windows; the GPU has 2",
    ),
    (
        "mig-instance",
        _set("gpus/1/mig_instances/0/1/0/slices", 9),
        400,
        "gpus[1].mig_instances[0][1][0].slices",
        "must be between 1 and 8",
    ),
    (
        "module-counter",
        _module_counter,
        400,
        "host.cpu_energy_j[2]",
        "gpus[1] has a module energy counter covering the CPU and memory (gpu+cpu+memory); a modelled CPU/DRAM "
        "figure on top would count them twice",
    ),
]


@pytest.mark.parametrize(("mutate", "status", "field", "message"), [r[1:] for r in RULES], ids=[r[0] for r in RULES])
def test_each_rule_refuses_naming_the_element(mutate, status, field, message):
    doc = base_doc()
    mutate(doc)
    with pytest.raises(BatchError) as err:
        parse(doc)
    assert (err.value.status, err.value.field, err.value.message) == (status, field, message)


def test_a_body_that_is_not_an_object_is_refused():
    with pytest.raises(BatchError) as err:
        parse([base_doc()])
    assert (err.value.status, err.value.field, err.value.message) == (400, "body", "must be an object")


def test_more_gpu_windows_than_allowed_is_413():
    with pytest.raises(BatchError) as err:
        parse(base_doc(), max_windows=4)
    assert (err.value.status, err.value.field, err.value.message) == (
        413,
        "gpus",
        "a batch may carry at most 4 GPU windows",
    )
    assert len(parse(base_doc(), max_windows=5).gpu_rows) == 5


def test_integers_in_float_columns_read_as_floats_and_huge_ones_are_refused():
    doc = base_doc()
    doc["gpus"][0]["energy_j"] = [6500, 6400, 6600]
    assert parse(doc).series[0].energy_j.tolist() == [6500.0, 6400.0, 6600.0]
    doc["gpus"][0]["mem_used_mib"][1] = 10**400
    with pytest.raises(BatchError) as err:
        parse(doc)
    assert (err.value.field, err.value.message) == ("gpus[0].mem_used_mib[1]", "must be finite (no NaN or infinity)")


# --- v1 -> v2 property ---------------------------------------------------------------------------

_numbers = st.one_of(
    st.floats(min_value=0.0, max_value=100.0, allow_nan=False), st.integers(min_value=0, max_value=100)
)
_procs = st.lists(
    st.fixed_dictionaries(
        {
            "pid": st.one_of(st.none(), st.integers(min_value=0, max_value=2**40)),
            "sm_util_pct": st.one_of(st.none(), _numbers),
            "job_key": st.one_of(st.none(), st.sampled_from(["slurm:1", "k8s:a", ""])),
        }
    ),
    max_size=3,
)
_mig = st.one_of(
    st.none(),
    st.lists(
        st.fixed_dictionaries(
            {"profile": st.sampled_from(["1g.10gb", "3g.40gb"]), "pids": st.lists(st.integers(0, 5), max_size=2)},
            optional={"activity": st.floats(0.0, 1.0), "job_keys": st.lists(st.sampled_from(["k8s:x", "k8s:y"]))},
        ),
        max_size=2,
    ),
)
_QUALITY = st.sampled_from(["measured", "integrated", "interpolated", "modelled"])


@st.composite
def v1_batches(draw) -> dict:
    devices = [
        (
            f"GPU-p-{i}",
            i,
            draw(st.sampled_from(["NVIDIA H100", None])),
            draw(st.sampled_from([None, "gpu", "gpu+memory"])),
        )
        for i in range(draw(st.integers(0, 3)))
    ]
    windows = []
    start = T0
    seq = draw(st.integers(0, 2**40))
    for _ in range(draw(st.integers(1, 5))):
        duration = dt.timedelta(milliseconds=draw(st.integers(1000, 60_000)))
        gpus = []
        for uuid_, index, name, covers in devices:
            if not draw(st.booleans()) and len(devices) > 1:
                continue  # this GPU is missing from this window
            gpu = {
                "uuid": uuid_,
                "index": index,
                "energy_j": draw(_numbers),
                "counter_mj": draw(st.one_of(st.none(), st.integers(0, 2**62))),
                "avg_power_w": draw(_numbers),
                "max_power_w": draw(_numbers),
                "util_pct": draw(_numbers),
                "mem_util_pct": draw(_numbers),
                "mem_used_mib": draw(_numbers),
                "power_limit_w": draw(st.one_of(st.none(), _numbers)),
                "quality": draw(_QUALITY),
                "processes": draw(st.one_of(st.none(), _procs)),
            }
            if name is not None:
                gpu["name"] = name
            if covers is not None:
                gpu["energy_covers"] = covers
            mig = draw(_mig)
            if mig is not None:
                gpu["mig_instances"] = mig
            gpus.append(gpu)
        windows.append(
            {
                "seq": seq,
                "start": start.isoformat(),
                "end": (start + duration).isoformat(),
                "host": {
                    "cpu_energy_j": draw(_numbers),
                    "dram_energy_j": draw(_numbers),
                    "wall_energy_j": draw(st.one_of(st.none(), _numbers)),
                    "cpu_util_pct": draw(_numbers),
                    "quality": draw(_QUALITY),
                },
                "gpus": gpus,
            }
        )
        seq += draw(st.integers(1, 1000))
        start += duration + dt.timedelta(milliseconds=draw(st.integers(0, 5000)))
    return {"batch_id": str(uuid.uuid4()), "hostname": "h", "windows": windows}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(payload=v1_batches())
def test_any_valid_v1_batch_converted_to_v2_parses_to_the_same_series(payload):
    from_v1 = parse_batch(data=payload, now=NOW, **LIMITS)
    from_v2 = parse_batch_v2(data=json.loads(json.dumps(to_v2(payload))), now=NOW, **LIMITS)
    assert_same_series(from_v1.gpu_series, from_v2.series)
    # Rows derived from series are by seq, then in the series' device order (first seen).
    assert sorted(from_v1.gpu_rows, key=_row_key) == sorted(from_v2.gpu_rows, key=_row_key)
    assert from_v1.host_rows == from_v2.host_rows


def _row_key(row: GpuRow) -> tuple[int, str]:
    return row.seq, row.uuid


def test_windows_v2_cannot_carry_exactly_are_left_to_v1():
    windows = [
        window(seq=1, start=T0, gpus=[gpu_entry(uuid_=GPU_A, name="A")]),
        window(seq=2, start=T0 + dt.timedelta(seconds=10), gpus=[gpu_entry(uuid_=GPU_A, name="B")]),
    ]
    assert columns_v2(windows) is None  # a device's name changes within the batch
    assert columns_v2([window(seq=1, start=T0, gpus=[gpu_entry(uuid_=GPU_A)] * 2)]) is None  # twice in a window
    assert columns_v2([{**windows[0], "start": "10:00"}]) is None
    assert columns_v2([{**windows[0], "gpus": [{"uuid": GPU_A, "processes": "none"}]}]) is None
    assert iso_to_us("2026-11-26T10:00:00.000001+01:00") == to_us(dt.datetime(2026, 11, 26, 9, 0, 0, 1, tzinfo=dt.UTC))
    assert iso_to_us("2026-11-26T10:00:00") is None


# --- through the API -----------------------------------------------------------------------------


@pytest.fixture
def host_world(db):
    host = HostFactory(hostname="gpu-node-07", gpu_slots=2)
    devices = [DeviceFactory(host=host, index=0, uuid=GPU_A), DeviceFactory(host=host, index=1, uuid=GPU_B)]
    secret = token_create(org=host.cluster.site.org, name="agent", scope=ApiToken.Scope.HOST, host=host).secret
    start = dt.datetime.now(dt.UTC).replace(minute=0, second=0, microsecond=0) - dt.timedelta(hours=2)
    job = JobFactory(cluster=host.cluster, scheduler_job_id="88123", started_at=start - dt.timedelta(hours=1))
    JobAllocationFactory(job=job, device=devices[0])
    return host, devices, secret, start


def _world_payload(host, start) -> dict:
    doc = base_doc()
    shift = to_us(start) - T0_US
    for key in ("start_us", "end_us"):
        doc["windows"][key] = [v + shift for v in doc["windows"][key]]
    doc["hostname"] = host.hostname
    doc["sent_at"] = dt.datetime.now(dt.UTC).isoformat()
    doc["batch_id"] = str(uuid.uuid4())
    v1 = {k: v for k, v in doc.items() if k not in ("format", "windows", "host", "gpus")}
    v1["windows"] = windows_v1(doc)
    return v1


# Ids and the times of receipt and computation differ between the two runs; nothing else may.
_VOLATILE = {"id", "batch_id", "received_at", "clock_offset_s", "attributed_at", "claimed_at", "computed_at"}


def _rows(table: str, order: str) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT * FROM {table} ORDER BY {order}")
        names = [c.name for c in cursor.description]
        return [
            tuple(sorted((n, v) for n, v in zip(names, row, strict=True) if n not in _VOLATILE))
            for row in cursor.fetchall()
        ]


def _ingest_and_attribute(client, secret, payload) -> dict:
    from accounting.services.attribution import batches_attribute

    response = post_batch(client, secret, payload)
    assert response.status_code == 202, response.content
    assert response.json()["accepted_windows"] == 5
    pk = TelemetryBatch.objects.get().pk
    assert batches_attribute(batch_pks=[pk], now=dt.datetime.now(dt.UTC)).attributed == [pk]
    return {
        "batch": _rows("telemetry_telemetrybatch", "id"),
        "gpu": _rows("telemetry_gpuwindow", "device_id, seq"),
        "host": _rows("telemetry_hostwindow", "seq"),
        "ledger": _rows(
            "accounting_ledgerentry", "device_id NULLS FIRST, component, job_id NULLS FIRST, hour, account"
        ),
    }


class _Rollback(Exception):
    pass


@pytest.mark.django_db
def test_v1_and_v2_of_the_same_windows_store_identical_rows_and_ledger(client, host_world):
    host, _, secret, start = host_world
    v1 = _world_payload(host, start)
    with pytest.raises(_Rollback), transaction.atomic():
        stored_v1 = _ingest_and_attribute(client, secret, v1)
        raise _Rollback
    assert stored_counts() == (0, 0, 0)
    stored_v2 = _ingest_and_attribute(client, secret, to_v2(v1))
    assert stored_v1 == stored_v2
    assert len(stored_v2["gpu"]) == 5 and len(stored_v2["host"]) == 3
    assert len(stored_v2["ledger"]) > 0
    assert to_v2(v1)["gpus"][1]["window_index"] == [0, 2]


@pytest.mark.django_db
def test_a_bad_v2_batch_is_a_400_naming_the_element_and_changes_nothing(client, host_world):
    host, _, secret, start = host_world
    doc = to_v2(_world_payload(host, start))
    doc["gpus"][1]["util_pct"][1] = 120.0
    response = post_batch(client, secret, doc)
    assert response.status_code == 400
    assert response.json()["errors"] == [{"field": "gpus[1].util_pct[1]", "message": "must be <= 100"}]
    assert stored_counts() == (0, 0, 0)


@pytest.mark.django_db
def test_a_v2_batch_is_accepted_without_gzip_and_a_resend_is_a_duplicate(client, host_world):
    host, _, secret, start = host_world
    doc = to_v2(_world_payload(host, start))
    headers = {"HTTP_AUTHORIZATION": f"Bearer {secret}"}
    first = client.post(INGEST_URL, data=json.dumps(doc), content_type="application/json", **headers)
    assert first.status_code == 202, first.content
    again = client.post(
        INGEST_URL,
        data=gzip.compress(json.dumps(doc).encode()),
        content_type="application/json",
        HTTP_CONTENT_ENCODING="gzip",
        **headers,
    )
    assert again.status_code == 200 and again.json()["duplicate"] is True
    assert stored_counts() == (1, 5, 3)


@pytest.mark.django_db
def test_the_agents_sender_sends_v2_by_default_and_the_server_accepts_it(client, host_world):
    from telemetry.agent.sender import Sender

    host, _, secret, start = host_world
    v1 = _world_payload(host, start)
    spooled = Batch(1, v1["batch_id"], 41, 43, v1["windows"], 0)
    for wire_format, expected in (("v2", 2), ("v1", None)):
        sender = Sender(
            spool=None, server_url="http://server", token=secret, hostname=host.hostname, wire_format=wire_format
        )  # type: ignore[arg-type]
        body = json.loads(gzip.decompress(sender.body(spooled, sent_at=dt.datetime.now(dt.UTC).timestamp())))
        assert body.get("format") == expected
    sender = Sender(spool=None, server_url="http://server", token=secret, hostname=host.hostname)  # type: ignore[arg-type]
    raw = sender.body(spooled, sent_at=dt.datetime.now(dt.UTC).timestamp())
    assert json.loads(gzip.decompress(raw))["format"] == 2
    response = client.post(
        INGEST_URL,
        data=raw,
        content_type="application/json",
        HTTP_CONTENT_ENCODING="gzip",
        HTTP_AUTHORIZATION=f"Bearer {secret}",
    )
    assert response.status_code == 202, response.content
    assert stored_counts() == (1, 5, 3)


def test_a_batch_spooled_by_an_older_agent_that_v2_cannot_carry_goes_as_v1():
    from telemetry.agent.sender import Sender

    windows = [
        {**window(seq=1, start=T0, gpus=[gpu_entry(uuid_=GPU_A, name="A")])},
        {**window(seq=2, start=T0 + dt.timedelta(seconds=10), gpus=[gpu_entry(uuid_=GPU_A, name="B")])},
    ]
    sender = Sender(spool=None, server_url="http://server", token="t", hostname="h")  # type: ignore[arg-type]
    body = json.loads(gzip.decompress(sender.body(Batch(1, str(uuid.uuid4()), 1, 2, windows, 0), sent_at=0.0)))
    assert "format" not in body and body["windows"] == windows


@pytest.mark.django_db
def test_the_openapi_schema_describes_both_formats(client):
    schema = client.get("/api/schema/?format=json").json()
    request_body = schema["paths"]["/api/v1/ingest/batches"]["post"]["requestBody"]
    # Either shape has required members: the body is required (a POST without one is a 400).
    assert request_body["required"] is True
    body = request_body["content"]["application/json"]["schema"]
    one_of = schema["components"]["schemas"][body["$ref"].rsplit("/", 1)[1]]["oneOf"]
    names = [ref["$ref"].rsplit("/", 1)[1] for ref in one_of]
    assert names == ["IngestBatchV1", "IngestBatchV2"]
    v2 = schema["components"]["schemas"]["IngestBatchV2"]
    assert set(v2["required"]) == {"batch_id", "hostname", "format", "windows", "host", "gpus"}
    gpu = schema["components"]["schemas"]["GpuColumnsV2"]
    assert gpu["properties"]["util_pct"]["items"]["maximum"] == 100.0
    assert set(gpu["required"]) == {
        "uuid",
        "index",
        "energy_j",
        "avg_power_w",
        "max_power_w",
        "util_pct",
        "mem_util_pct",
        "quality",
    }


def test_v1_refuses_an_integer_beyond_the_float_range_naming_the_field():
    payload = batch(
        hostname="h", windows=[window(seq=1, start=T0, gpus=[gpu_entry(uuid_=GPU_A, mem_used_mib=10**400)])]
    )
    with pytest.raises(BatchError) as err:
        parse_batch(data=payload, now=NOW, **LIMITS)
    assert (err.value.status, err.value.field, err.value.message) == (
        400,
        "windows[0].gpus[0].mem_used_mib",
        "must be finite (no NaN or infinity)",
    )
