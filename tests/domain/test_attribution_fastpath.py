"""The optimised attribute() gives exactly the output of the original implementation.

``reference_attribution`` is a frozen, verbatim copy of accounting/domain/attribution.py from
before the fast paths. For random inputs (exclusive and shared devices, MIG fractions, the
same job on several slices, oversubscription, allocations starting and ending inside windows,
hour crossings, telemetry gaps, misaligned host windows, wall power above and below the
components, non-UTC and DST-observing time zones, reused and fresh process tuples), the new
output must equal the reference's — compared as dataclasses and by repr, so every float is
the same bits — also when the new implementation is given the inputs in any other order. For
invalid input both must raise the same error.
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from accounting.domain.attribution import attribute
from accounting.domain.types import Allocation, GpuWindowIn, HostWindowIn, MigInstanceSample, ProcessSample, Quality
from tests.domain import reference_attribution as reference

KEYS = ("slurm:1", "slurm:2", "slurm:3", "k8s:a", "k8s:b")
PLUS_2 = timezone(timedelta(hours=2))
MINUS_0530 = timezone(-timedelta(hours=5, minutes=30))
BERLIN = ZoneInfo("Europe/Berlin")

qualities = st.sampled_from(list(Quality))
energies = st.one_of(
    st.floats(min_value=0.0, max_value=1e6, allow_nan=False, allow_infinity=False),
    st.sampled_from([0.0, 600.0, 3_000.0]),
)
fractions = st.one_of(
    st.sampled_from([1.0, 1.0, 0.5, 0.25, 0.125, 1 / 7]),
    st.floats(min_value=1e-3, max_value=1.0, allow_nan=False),
)
process_tuples = st.lists(
    st.builds(
        ProcessSample,
        pid=st.integers(1, 99_999),
        sm_util_pct=st.one_of(st.floats(min_value=0.0, max_value=100.0, allow_nan=False), st.just(0.0)),
        job_key=st.one_of(st.none(), st.sampled_from(KEYS)),
    ),
    max_size=4,
).map(tuple)
# MIG instances: measured (activity 0..1), or some unmeasured (None: split by slice fraction).
mig_tuples = st.lists(
    st.builds(
        MigInstanceSample,
        gpu_instance_id=st.integers(0, 14),
        slices=st.sampled_from([1, 1, 2, 3, 4, 7]),
        activity=st.one_of(st.floats(min_value=0.0, max_value=1.0, allow_nan=False), st.just(0.0), st.none()),
        job_keys=st.frozensets(st.sampled_from(KEYS), max_size=2),
    ),
    max_size=3,
).map(tuple)


@st.composite
def moments(draw, base: datetime, offsets_s):
    """A timestamp base + offset, in one of several equivalent time zones (mostly UTC)."""
    moment = base + timedelta(seconds=draw(offsets_s))
    zone = draw(st.sampled_from([UTC, UTC, UTC, UTC, PLUS_2, MINUS_0530, BERLIN]))
    return moment.astimezone(zone)


@st.composite
def scenarios(draw):
    # A start close below an hour boundary most of the time, so hour crossings are common.
    base = datetime(2026, 3, 2, 9, tzinfo=UTC) + timedelta(seconds=draw(st.sampled_from([0, 3_000, 3_540, 3_595])))
    tick_s = draw(st.sampled_from([10, 10, 10, 30, 60, 7, 1_200]))
    n_ticks = draw(st.integers(1, 12))
    typical = draw(st.booleans())  # one shared timestamp object per tick, like the mapper
    stamps = [base + timedelta(seconds=tick_s * i) for i in range(n_ticks + 1)]
    if not typical:
        stamps = [stamp.astimezone(draw(st.sampled_from([UTC, UTC, PLUS_2, BERLIN]))) for stamp in stamps]
    devices = list(range(draw(st.integers(1, 4))))
    shared_processes = [draw(process_tuples) for _ in range(3)]
    shared_mig = [(), draw(mig_tuples)]

    gpu_windows = []
    for device in devices:
        for seq, (start, end) in enumerate(itertools.pairwise(stamps)):
            if seq and not typical and draw(st.integers(0, 4)) == 0:  # telemetry gap
                continue
            if not typical and draw(st.integers(0, 9)) == 0:  # misaligned / odd-length window
                end = start + timedelta(seconds=draw(st.integers(1, 5_000)))
            energy_j = draw(energies)
            processes = draw(st.one_of(st.sampled_from(shared_processes), process_tuples, st.just(shared_processes[0])))
            gpu_windows.append(
                GpuWindowIn(
                    device_id=device,
                    seq=seq,
                    start=start,
                    end=end,
                    energy_j=energy_j,
                    avg_power_w=energy_j / (end - start).total_seconds(),
                    util_pct=50.0,
                    quality=draw(st.sampled_from([Quality.MEASURED] * 3 + list(Quality))),
                    idle_power_w=draw(st.sampled_from([60.0, 0.0, 400.0, 1e5]) | st.floats(0.0, 500.0)),
                    processes=processes,
                    mig_instances=draw(st.one_of(st.sampled_from(shared_mig), mig_tuples, st.just(()))),
                    energy_covers=draw(st.sampled_from(["gpu", "gpu", "gpu+memory", "gpu+cpu+memory"])),
                )
            )

    host_windows = []
    for seq, (start, end) in enumerate(itertools.pairwise(stamps)):
        if not typical and draw(st.integers(0, 5)) == 0:
            continue
        if not typical and draw(st.integers(0, 9)) == 0:
            start = start + timedelta(seconds=draw(st.integers(-30, 30)))
            end = start + timedelta(seconds=draw(st.integers(1, 3_000)))
        cpu_j, dram_j = draw(energies), draw(energies)
        gpu_j = sum(w.energy_j for w in gpu_windows if w.seq == seq)
        wall = draw(st.one_of(st.none(), st.floats(-5_000.0, 50_000.0), st.just(0.0)))
        host_windows.append(
            HostWindowIn(
                seq=seq,
                start=start,
                end=end,
                cpu_energy_j=cpu_j,
                dram_energy_j=dram_j,
                quality=draw(qualities),
                wall_energy_j=None if wall is None else max(0.0, gpu_j + cpu_j + dram_j + wall),
            )
        )

    span_s = tick_s * n_ticks
    offsets = st.one_of(
        st.just(-7_200), st.integers(-600, span_s + 600), st.sampled_from([0, tick_s, span_s, tick_s // 2])
    )
    allocations = []
    for device in [*devices, 9]:  # device 9 reports no windows: its allocations are ignored
        for _ in range(draw(st.integers(0, 3))):
            start_s = draw(offsets)
            end_s = draw(st.one_of(st.none(), offsets, st.just(span_s + 7_200)))
            if end_s is not None and end_s < start_s:
                start_s, end_s = end_s, start_s
            allocations.append(
                Allocation(
                    job_id=draw(st.integers(1, 4)),
                    device_id=device,
                    start=draw(moments(base, st.just(start_s))),
                    end=None if end_s is None else draw(moments(base, st.just(end_s))),
                    fraction=draw(fractions),
                    job_keys=frozenset(draw(st.lists(st.sampled_from(KEYS), max_size=2))),
                    mig_instance=draw(st.sampled_from(["", "1g.10gb", "3g.40gb"])),
                )
            )
    return gpu_windows, host_windows, allocations, draw(st.integers(0, 8))


def outputs(module_attribute, gpu_windows, host_windows, allocations, slots):
    result = module_attribute(
        gpu_windows=gpu_windows, host_windows=host_windows, allocations=allocations, host_gpu_slots=slots
    )
    return result.shares, result.diagnostics


def assert_identical(new, expected):
    assert new == expected
    # repr tells 0.0 from -0.0 and prints every float exactly (shortest round-trip digits).
    assert repr(new) == repr(expected)


@settings(max_examples=300, deadline=None)
@given(scenarios(), st.randoms(use_true_random=False))
def test_same_output_as_reference_in_any_order(scenario, rnd):
    gpu_windows, host_windows, allocations, slots = scenario
    expected = outputs(reference.attribute, gpu_windows, host_windows, allocations, slots)
    assert_identical(outputs(attribute, gpu_windows, host_windows, allocations, slots), expected)

    shuffled = [list(gpu_windows), list(host_windows), list(allocations)]
    for items in shuffled:
        rnd.shuffle(items)
    assert_identical(outputs(attribute, *shuffled, slots), expected)


@st.composite
def typical_batches(draw):
    """The production shape: 8 GPUs x n consecutive 10 s windows, whole-batch allocations."""
    base = datetime(2026, 3, 2, 9, tzinfo=UTC) + timedelta(seconds=draw(st.sampled_from([0, 600, 3_300, 3_590])))
    n = draw(st.integers(6, 120))
    stamps = [base + timedelta(seconds=10 * i) for i in range(n + 1)]
    allocations = []
    processes = {}
    for device in range(8):
        holders = draw(st.lists(st.tuples(st.integers(1, 5), fractions), max_size=3))
        for job, fraction in holders:
            allocations.append(
                Allocation(job, device, base - timedelta(hours=2), None, fraction, frozenset({f"slurm:{job}"}))
            )
        processes[device] = draw(process_tuples)
    gpu_windows = [
        GpuWindowIn(
            device, i, stamps[i], stamps[i + 1], draw(energies), 0.0, 0.0, Quality.MEASURED, 60.0, processes[device]
        )
        for i in range(n)
        for device in range(8)
    ]
    wall = draw(st.one_of(st.none(), st.just(30_000.0)))
    host_windows = [
        HostWindowIn(i, stamps[i], stamps[i + 1], draw(energies), 400.0, Quality.MEASURED, wall) for i in range(n)
    ]
    return gpu_windows, host_windows, allocations, 8


@settings(max_examples=40, deadline=None)  # big inputs (up to 960 GPU windows): fewer examples
@given(typical_batches())
def test_typical_batches_same_output_as_reference(scenario):
    expected = outputs(reference.attribute, *scenario)
    assert_identical(outputs(attribute, *scenario), expected)


def _window(**changes) -> GpuWindowIn:
    fields = dict(
        device_id=0,
        seq=1,
        start=datetime(2026, 3, 2, 10, tzinfo=UTC),
        end=datetime(2026, 3, 2, 10, 1, tzinfo=UTC),
        energy_j=600.0,
        avg_power_w=10.0,
        util_pct=0.0,
        quality=Quality.MEASURED,
        idle_power_w=60.0,
    )
    return GpuWindowIn(**(fields | changes))


def _host(**changes) -> HostWindowIn:
    fields = dict(
        seq=1,
        start=datetime(2026, 3, 2, 10, tzinfo=UTC),
        end=datetime(2026, 3, 2, 10, 1, tzinfo=UTC),
        cpu_energy_j=100.0,
        dram_energy_j=10.0,
        quality=Quality.MEASURED,
        wall_energy_j=None,
    )
    return HostWindowIn(**(fields | changes))


def _allocation(**changes) -> Allocation:
    fields = dict(job_id=1, device_id=0, start=datetime(2026, 3, 2, 9, tzinfo=UTC), end=None)
    return Allocation(**(fields | changes))


NAIVE = datetime(2026, 3, 2, 10, 0, 30)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"gpu_windows": [_window(), _window(start=NAIVE)]},
        {"gpu_windows": [_window(end=datetime(2026, 3, 2, 10, tzinfo=UTC))]},
        {"gpu_windows": [_window(energy_j=-0.5), _window(idle_power_w=float("nan"))]},
        {"gpu_windows": [_window(energy_j=float("inf"))]},
        {"gpu_windows": [_window(energy_j=10**400)]},
        {"gpu_windows": [_window(processes=(ProcessSample(7, float("nan")),))]},
        {"gpu_windows": [_window(processes=(ProcessSample(7, -1.0),))], "host_windows": [_host(cpu_energy_j=-1.0)]},
        {"gpu_windows": [_window(), _window(energy_covers="gpu+cpu")]},
        {"gpu_windows": [_window(energy_covers=["gpu"])]},
        {"host_windows": [_host(end=datetime(2026, 3, 2, 9, 59, tzinfo=UTC))]},
        {"host_windows": [_host(wall_energy_j=float("nan"))]},
        {"host_windows": [_host(start=NAIVE)], "allocations": [_allocation(fraction=2.0)]},
        {"allocations": [_allocation(fraction=0.0)]},
        {"allocations": [_allocation(fraction=float("nan"))]},
        {"allocations": [_allocation(end=datetime(2026, 3, 2, 8, tzinfo=UTC))]},
        {"allocations": [_allocation(start=NAIVE)]},
        {"host_gpu_slots": True},
        {"host_gpu_slots": -1},
        # Accepted by the full checks though not by the inline ones: must still be accepted.
        {"gpu_windows": [_window(energy_j=600, idle_power_w=60)], "host_windows": [_host(cpu_energy_j=5)]},
        {
            "allocations": [_allocation(fraction=1)],
            "gpu_windows": [_window(start=datetime(2026, 3, 2, 11, tzinfo=BERLIN))],
        },
    ],
)
def test_invalid_and_unusual_input_handled_like_the_reference(kwargs):
    arguments = {"gpu_windows": [_window()], "host_windows": [], "allocations": [], "host_gpu_slots": 8} | kwargs
    try:
        expected = reference.attribute(**arguments)
    except Exception as error:
        with pytest.raises(type(error)) as raised:
            attribute(**arguments)
        assert str(raised.value) == str(error)
    else:
        result = attribute(**arguments)
        assert_identical((result.shares, result.diagnostics), (expected.shares, expected.diagnostics))
