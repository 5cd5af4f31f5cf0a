"""The columnar path gives exactly the output of ``attribute`` over the same windows.

``attribute_columns`` takes a device's windows as arrays (the columnar raw store's form) and
attributes runs of single-piece windows with numpy. For random inputs (runs of process sets and
MIG instance lists, hour crossings, allocations starting and ending inside windows, shared and
oversubscribed devices, unmeasured MIG activity, mixed qualities, zero energies, host windows
with and without a wall meter, allocations in a DST-observing zone, per-window devices beside
columnar ones) its shares and diagnostics must equal ``attribute``'s over
``GpuColumns.windows()``, compared as dataclasses and by repr (every float the same bits).
Columns that fail the columnar checks go to ``attribute`` whole and raise its error.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from accounting.domain.attribution import attribute
from accounting.domain.attribution.columnar import GpuColumns, attribute_columns
from accounting.domain.types import (
    QUALITY_RANK,
    Allocation,
    Component,
    GpuWindowIn,
    HostWindowIn,
    MigInstanceSample,
    ProcessSample,
    Quality,
)

KEYS = ("slurm:1", "slurm:2", "slurm:3", "k8s:a")
BERLIN = ZoneInfo("Europe/Berlin")
HOUR_US = 3_600_000_000

energies = st.one_of(
    st.floats(min_value=0.0, max_value=1e6, allow_nan=False, allow_infinity=False),
    st.sampled_from([0.0, 600.0, 3_000.0]),
)
fractions = st.one_of(st.sampled_from([1.0, 0.5, 0.25, 1 / 7]), st.floats(min_value=1e-3, max_value=1.0))
process_tuples = st.lists(
    st.builds(
        ProcessSample,
        pid=st.integers(1, 99_999),
        sm_util_pct=st.floats(min_value=0.0, max_value=100.0),
        job_key=st.one_of(st.none(), st.sampled_from(KEYS)),
    ),
    max_size=3,
).map(tuple)
mig_tuples = st.lists(
    st.builds(
        MigInstanceSample,
        gpu_instance_id=st.integers(0, 14),
        slices=st.sampled_from([1, 2, 3, 4, 7]),
        activity=st.one_of(st.floats(min_value=0.0, max_value=1.0), st.none()),
        job_keys=st.frozensets(st.sampled_from(KEYS), max_size=2),
    ),
    max_size=3,
).map(tuple)


def _us(moment: datetime) -> int:
    return int((moment - datetime(1970, 1, 1, tzinfo=UTC)) / timedelta(microseconds=1))


@st.composite
def columns_of(draw, device_id: int, base: datetime, tick_s: int, n: int) -> GpuColumns:
    starts = []
    ends = []
    at = _us(base)
    for _ in range(n):
        length_us = tick_s * 1_000_000
        if draw(st.integers(0, 9)) == 0:  # an odd-length window (may cross an hour)
            length_us = draw(st.integers(1, 5_000)) * 1_000_000 + draw(st.integers(0, 999_999))
        starts.append(at)
        ends.append(at + length_us)
        at += length_us if draw(st.integers(0, 5)) else length_us + tick_s * 1_000_000  # sometimes a gap
    energy = [draw(energies) for _ in range(n)]
    shared_processes = draw(process_tuples)
    runs = []
    first = 0
    while first < n:
        processes = draw(st.one_of(st.just(shared_processes), process_tuples, st.just(())))
        mig = draw(st.one_of(st.just(()), st.just(()), mig_tuples))
        runs.append((first, processes, mig))
        first += draw(st.integers(1, max(1, n)))
    ranks = [QUALITY_RANK[draw(st.sampled_from([Quality.MEASURED] * 4 + list(Quality)))] for _ in range(n)]
    return GpuColumns(
        device_id=device_id,
        seq=list(range(1, n + 1)),
        start_us=starts,
        end_us=ends,
        energy_j=energy,
        avg_power_w=[e / ((end - start) / 1e6) for e, start, end in zip(energy, starts, ends, strict=True)],
        util_pct=[50.0] * n,
        quality_rank=ranks,
        idle_power_w=draw(st.sampled_from([60.0, 0.0, 400.0, 1e5]) | st.floats(0.0, 500.0)),
        runs=tuple(runs),
        energy_covers=draw(st.sampled_from(["gpu", "gpu", "gpu+memory", "gpu+cpu+memory"])),
    )


@st.composite
def scenarios(draw):
    base = datetime(2026, 3, 2, 9, tzinfo=UTC) + timedelta(seconds=draw(st.sampled_from([0, 3_000, 3_540, 3_595])))
    tick_s = draw(st.sampled_from([10, 10, 10, 30, 60, 7, 1_200]))
    n = draw(st.integers(1, 40))
    n_columnar = draw(st.integers(1, 4))
    gpu_columns = [draw(columns_of(device, base, tick_s, n)) for device in range(n_columnar)]
    # Sometimes a device in the per-window form (gap-filled, in production) beside the columns,
    # and sometimes a second batch-day's columns of the same device.
    gpu_windows = []
    if draw(st.booleans()):
        gpu_windows = draw(columns_of(7, base, tick_s, n)).windows()
    if draw(st.integers(0, 4)) == 0:
        later = base + timedelta(seconds=tick_s * 3 * n)
        gpu_columns.append(draw(columns_of(0, later, tick_s, draw(st.integers(1, 10)))))

    span_s = tick_s * n * 2
    offsets = st.one_of(st.just(-7_200), st.integers(-600, span_s + 600), st.sampled_from([0, tick_s, span_s]))
    allocations = []
    zone = draw(st.sampled_from([UTC, UTC, UTC, BERLIN]))
    for device in [*range(n_columnar), 7, 9]:  # device 9 reports no windows: its allocations are ignored
        for _ in range(draw(st.integers(0, 3))):
            start_s = draw(offsets)
            end_s = draw(st.one_of(st.none(), offsets))
            if end_s is not None and end_s < start_s:
                start_s, end_s = end_s, start_s
            allocations.append(
                Allocation(
                    job_id=draw(st.integers(1, 4)),
                    device_id=device,
                    start=(base + timedelta(seconds=start_s)).astimezone(zone),
                    end=None if end_s is None else (base + timedelta(seconds=end_s)).astimezone(zone),
                    fraction=draw(fractions),
                    job_keys=frozenset(draw(st.lists(st.sampled_from(KEYS), max_size=2))),
                )
            )
    host_windows = []
    for seq in range(draw(st.integers(0, n))):
        start = base + timedelta(seconds=tick_s * seq)
        wall = draw(st.one_of(st.none(), st.none(), st.floats(0.0, 50_000.0)))
        host_windows.append(
            HostWindowIn(
                seq=seq,
                start=start,
                end=start + timedelta(seconds=tick_s),
                cpu_energy_j=draw(energies),
                dram_energy_j=draw(energies),
                quality=draw(st.sampled_from(list(Quality))),
                wall_energy_j=wall,
            )
        )
    return gpu_columns, gpu_windows, host_windows, allocations, draw(st.integers(0, 8))


def both(gpu_columns, gpu_windows, host_windows, allocations, slots):
    new = attribute_columns(
        gpu_columns=gpu_columns,
        gpu_windows=gpu_windows,
        host_windows=host_windows,
        allocations=allocations,
        host_gpu_slots=slots,
    )
    expected = attribute(
        gpu_windows=[*gpu_windows, *(w for c in gpu_columns for w in c.windows())],
        host_windows=host_windows,
        allocations=allocations,
        host_gpu_slots=slots,
    )
    return (new.shares, new.diagnostics), (expected.shares, expected.diagnostics)


@settings(max_examples=300, deadline=None)
@given(scenarios())
def test_same_output_as_attribute_over_the_windows(scenario):
    new, expected = both(*scenario)
    assert new == expected
    assert repr(new) == repr(expected)  # 0.0 vs -0.0, every float's digits


def _columns(**changes) -> GpuColumns:
    start = _us(datetime(2026, 3, 2, 10, tzinfo=UTC))
    fields = dict(
        device_id=0,
        seq=[1, 2, 3],
        start_us=[start, start + 10_000_000, start + 20_000_000],
        end_us=[start + 10_000_000, start + 20_000_000, start + 30_000_000],
        energy_j=[3_000.0, 3_000.0, 600.0],
        avg_power_w=[300.0, 300.0, 60.0],
        util_pct=[50.0, 50.0, 0.0],
        quality_rank=[0, 0, 0],
        idle_power_w=100.0,
        runs=((0, (ProcessSample(pid=1, sm_util_pct=80.0, job_key="slurm:1"),), ()),),
    )
    return GpuColumns(**(fields | changes))


def test_worked_example_exact_values():
    """Two jobs share a GPU half and half over three 10 s windows: 1 kJ idle (100 W x 10 s) per
    window split by share, active energy to the job whose process ran (slurm:1)."""
    allocations = [
        Allocation(1, 0, datetime(2026, 3, 2, 9, tzinfo=UTC), None, 0.5, frozenset({"slurm:1"})),
        Allocation(2, 0, datetime(2026, 3, 2, 9, tzinfo=UTC), None, 0.5, frozenset({"slurm:2"})),
    ]
    result = attribute_columns(gpu_columns=[_columns()], host_windows=[], allocations=allocations, host_gpu_slots=8)
    got = {(s.job_id, s.component): (s.energy_j, s.held_s) for s in result.shares}
    assert got == {
        (1, Component.GPU_IDLE): (1_300.0, 0.0),  # 500 + 500 + 300 (600 J window: idle capped at 600)
        (1, Component.GPU_ACTIVE): (4_000.0, 15.0),  # 2 x 2,000 J active, half of 30 s held
        (2, Component.GPU_IDLE): (1_300.0, 0.0),
        (2, Component.GPU_ACTIVE): (0.0, 15.0),
    }
    assert sum(s.energy_j for s in result.shares) == 6_600.0  # every joule on one account
    assert {s.energy_covers for s in result.shares} == {"gpu"}
    assert result.diagnostics == []


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"energy_j": [3_000.0, -1.0, 600.0]}, "GPU window device 0 seq 2 energy_j must be finite and >= 0"),
        ({"energy_j": [3_000.0, float("nan"), 600.0]}, "GPU window device 0 seq 2 energy_j must be finite"),
        ({"idle_power_w": float("inf")}, "GPU window device 0 seq 1 idle_power_w must be finite and >= 0"),
        ({"energy_covers": "cpu"}, "GPU window device 0 seq 1 energy_covers must be one of"),
        (
            {"end_us": [_us(datetime(2026, 3, 2, 10, tzinfo=UTC))] * 3},
            "GPU window device 0 seq 1 must end after it starts",
        ),
    ],
)
def test_invalid_columns_raise_attributes_error(changes, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace("+", r"\+")):
        attribute_columns(gpu_columns=[_columns(**changes)], host_windows=[], allocations=[], host_gpu_slots=8)


def test_windows_round_trip_the_runs():
    proc_a = (ProcessSample(pid=1, sm_util_pct=10.0, job_key="slurm:1"),)
    mig = (MigInstanceSample(gpu_instance_id=1, slices=3, activity=None, job_keys=frozenset({"slurm:2"})),)
    columns = _columns(runs=((0, proc_a, ()), (2, (), mig)))
    windows = columns.windows()
    assert [(w.seq, w.processes, w.mig_instances) for w in windows] == [(1, proc_a, ()), (2, proc_a, ()), (3, (), mig)]
    assert windows[0] == GpuWindowIn(
        device_id=0,
        seq=1,
        start=datetime(2026, 3, 2, 10, tzinfo=UTC),
        end=datetime(2026, 3, 2, 10, 0, 10, tzinfo=UTC),
        energy_j=3_000.0,
        avg_power_w=300.0,
        util_pct=50.0,
        quality=Quality.MEASURED,
        idle_power_w=100.0,
        processes=proc_a,
    )
    assert len(columns) == 3
