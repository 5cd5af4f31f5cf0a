"""Property tests: every joule lands on exactly one account, whatever the input order."""

from __future__ import annotations

import itertools
import math
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from accounting.domain.attribution import attribute
from accounting.domain.carbon import EmbodiedRate, carbonize, summarise
from accounting.domain.energy import fill_gaps
from accounting.domain.types import (
    Allocation,
    Component,
    GapResolution,
    GpuWindowIn,
    HostWindowIn,
    IntensityPoint,
    MigInstanceSample,
    ProcessSample,
    Quality,
)

# 09:40 so that generated timelines cross hour boundaries.
T0 = datetime(2026, 3, 2, 9, 40, tzinfo=UTC)
KEYS = ("slurm:1", "slurm:2", "k8s:a", "k8s:b")
PROPERTY_SETTINGS = settings(max_examples=200, deadline=None)

qualities = st.sampled_from(list(Quality))
energies = st.floats(min_value=0.0, max_value=1e6, allow_nan=False, allow_infinity=False)
fractions = st.one_of(
    st.sampled_from([0.125, 0.25, 0.5, 1.0]),
    st.floats(min_value=0.01, max_value=1.0, allow_nan=False),
)
processes = st.lists(
    st.builds(
        ProcessSample,
        pid=st.integers(1, 99_999),
        sm_util_pct=st.floats(min_value=0.0, max_value=100.0, allow_nan=False),
        job_key=st.one_of(st.none(), st.sampled_from(KEYS)),
    ),
    max_size=4,
).map(tuple)
# A MIG GPU's instances in a window: measured activity, or (sometimes) an unmeasured one.
mig_instances = st.lists(
    st.builds(
        MigInstanceSample,
        gpu_instance_id=st.integers(0, 14),
        slices=st.sampled_from([1, 2, 3, 4, 7]),
        activity=st.one_of(st.floats(min_value=0.0, max_value=1.0, allow_nan=False), st.none()),
        job_keys=st.frozensets(st.sampled_from(KEYS), max_size=2),
    ),
    min_size=1,
    max_size=4,
).map(tuple)


@st.composite
def scenarios(draw):
    """One host: a slot timeline shared by host and GPU windows, with holes and allocations."""
    slot_lengths_s = draw(st.lists(st.integers(1, 1_800), min_size=1, max_size=6))
    edges = [T0]
    for length_s in slot_lengths_s:
        edges.append(edges[-1] + timedelta(seconds=length_s))
    span_s = int((edges[-1] - T0).total_seconds())
    devices = list(range(draw(st.integers(1, 4))))
    # A mixed host: whole GPUs (any vendor: NVIDIA, AMD partitions as devices, a Grace Hopper
    # module) beside MIG GPUs whose windows carry their instances.
    mig_devices = {device for device in devices if draw(st.booleans())}

    gpu_windows = []
    for device in devices:
        for seq, (start, end) in enumerate(itertools.pairwise(edges)):
            if not draw(st.booleans()) and seq:  # telemetry holes after the first window
                continue
            energy_j = draw(energies)
            gpu_windows.append(
                GpuWindowIn(
                    device_id=device,
                    seq=seq,
                    start=start,
                    end=end,
                    energy_j=energy_j,
                    avg_power_w=energy_j / (end - start).total_seconds(),
                    util_pct=draw(st.floats(0.0, 100.0)),
                    quality=draw(qualities),
                    idle_power_w=draw(st.floats(min_value=0.0, max_value=400.0, allow_nan=False)),
                    processes=draw(processes),
                    mig_instances=draw(mig_instances) if device in mig_devices else (),
                )
            )

    host_windows = []
    for seq, (start, end) in enumerate(itertools.pairwise(edges)):
        cpu_j, dram_j = draw(energies), draw(energies)
        gpu_j = math.fsum(w.energy_j for w in gpu_windows if w.seq == seq)
        wall_delta_j = draw(st.one_of(st.none(), st.floats(-5_000.0, 50_000.0)))
        host_windows.append(
            HostWindowIn(
                seq=seq,
                start=start,
                end=end,
                cpu_energy_j=cpu_j,
                dram_energy_j=dram_j,
                quality=draw(qualities),
                wall_energy_j=None if wall_delta_j is None else max(0.0, gpu_j + cpu_j + dram_j + wall_delta_j),
            )
        )

    allocations = []
    for _ in range(draw(st.integers(0, 6))):
        start_s = draw(st.integers(-600, span_s + 600))
        length_s = draw(st.one_of(st.none(), st.integers(0, 4_000)))
        allocations.append(
            Allocation(
                job_id=draw(st.integers(1, 4)),
                device_id=draw(st.integers(0, 4)),  # device 4 never reports here: ignored
                start=T0 + timedelta(seconds=start_s),
                end=None if length_s is None else T0 + timedelta(seconds=start_s + length_s),
                fraction=draw(fractions),
                job_keys=frozenset(draw(st.lists(st.sampled_from(KEYS), max_size=2))),
            )
        )
    return gpu_windows, host_windows, allocations, draw(st.integers(0, 8))


def run(gpu_windows, host_windows, allocations, slots):
    return attribute(gpu_windows=gpu_windows, host_windows=host_windows, allocations=allocations, host_gpu_slots=slots)


def expected_total_j(gpu_windows, host_windows) -> float:
    parts = [w.energy_j for w in gpu_windows]
    for host in host_windows:
        parts += [host.cpu_energy_j, host.dram_energy_j]
        if host.wall_energy_j is not None:
            gpu_j = math.fsum(w.energy_j for w in gpu_windows if w.seq == host.seq)
            parts.append(max(0.0, host.wall_energy_j - math.fsum((gpu_j, host.cpu_energy_j, host.dram_energy_j))))
    return math.fsum(parts)


def assert_close(actual: float, expected: float, *, scale: float) -> None:
    assert math.isclose(actual, expected, rel_tol=1e-9, abs_tol=1e-9 * max(1.0, scale)), (actual, expected)


@PROPERTY_SETTINGS
@given(scenarios())
def test_conservation(scenario):
    gpu_windows, host_windows, allocations, slots = scenario
    result = run(gpu_windows, host_windows, allocations, slots)
    expected = expected_total_j(gpu_windows, host_windows)

    assert_close(math.fsum(s.energy_j for s in result.shares), expected, scale=expected)
    assert all(s.energy_j >= 0.0 and s.held_s >= 0.0 for s in result.shares)
    assert all(
        s.hour.minute == s.hour.second == s.hour.microsecond == 0 and s.hour.tzinfo is UTC for s in result.shares
    )

    for device in {w.device_id for w in gpu_windows}:
        windows = [w for w in gpu_windows if w.device_id == device]
        shares = [s for s in result.shares if s.device_id == device]
        device_j = math.fsum(w.energy_j for w in windows)
        assert_close(math.fsum(s.energy_j for s in shares), device_j, scale=device_j)
        # Measured energy is conserved too: the device's measured windows, share by share.
        measured_j = math.fsum(w.energy_j for w in windows if w.quality is Quality.MEASURED)
        assert_close(math.fsum(s.measured_energy_j for s in shares), measured_j, scale=device_j)
        assert all(0.0 <= s.measured_energy_j <= s.energy_j for s in shares)
        assert all(s.measured_energy_j == s.energy_j for s in shares if s.quality is Quality.MEASURED)
        # Each device-second is held exactly once: by jobs, or by the fleet.
        seconds = math.fsum((w.end - w.start).total_seconds() for w in windows)
        assert_close(math.fsum(s.held_s for s in shares), seconds, scale=seconds)
        assert all(s.held_s == 0.0 for s in shares if s.component is not Component.GPU_ACTIVE)

    host_j = math.fsum(s.energy_j for s in result.shares if s.device_id is None)
    assert_close(host_j, expected - math.fsum(w.energy_j for w in gpu_windows), scale=expected)


@PROPERTY_SETTINGS
@given(scenarios(), st.data())
def test_measured_energy_of_a_share_does_not_depend_on_batching(scenario, data):
    # Issue 19: the same GPU windows attributed as one batch or cut into consecutive batches give
    # every (account, job, device, component, hour) the same energy and the same measured energy.
    gpu_windows, _, allocations, slots = scenario
    ordered = sorted(gpu_windows, key=lambda w: (w.start, w.device_id))
    cuts = sorted(data.draw(st.sets(st.integers(1, max(1, len(ordered) - 1)), max_size=4)))
    batches = [ordered[a:b] for a, b in itertools.pairwise([0, *cuts, len(ordered)]) if ordered[a:b]]

    def by_key(shares_lists):
        out: dict[tuple, tuple[list[float], list[float]]] = {}
        for shares in shares_lists:
            for s in shares:
                energy, measured = out.setdefault((s.account, s.job_id, s.device_id, s.component, s.hour), ([], []))
                energy.append(s.energy_j)
                measured.append(s.measured_energy_j)
        return {key: (math.fsum(e), math.fsum(m)) for key, (e, m) in out.items()}

    whole = by_key([run(gpu_windows, [], allocations, slots).shares])
    split = by_key([run(batch, [], allocations, slots).shares for batch in batches])
    assert set(split) == set(whole)
    for key, (energy_j, measured_j) in whole.items():
        assert_close(split[key][0], energy_j, scale=energy_j)
        assert_close(split[key][1], measured_j, scale=energy_j)


@PROPERTY_SETTINGS
@given(scenarios(), st.randoms(use_true_random=False))
def test_output_is_identical_for_any_input_order(scenario, rnd):
    gpu_windows, host_windows, allocations, slots = scenario
    baseline = run(gpu_windows, host_windows, allocations, slots)
    shuffled = [list(gpu_windows), list(host_windows), list(allocations)]
    for items in shuffled:
        rnd.shuffle(items)
    assert run(*shuffled, slots) == baseline


@settings(max_examples=50, deadline=None)
@given(scenarios())
def test_attributing_twice_gives_identical_output(scenario):
    assert run(*scenario) == run(*scenario)


@st.composite
def device_batches(draw):
    """One device's windows with gaps of any length, and a counter that may reset."""
    windows, counters = [], {}
    cursor = T0
    counter_mj = draw(st.integers(0, 10**12))
    for seq in range(draw(st.integers(1, 8))):
        cursor += timedelta(seconds=draw(st.sampled_from([0, 0, 5, 30, 60, 61, 600])))
        length_s = draw(st.integers(1, 120))
        power_w = draw(st.floats(min_value=0.0, max_value=1_000.0, allow_nan=False))
        energy_j = power_w * length_s
        gap_j = draw(st.floats(min_value=0.0, max_value=1e5, allow_nan=False))
        counter_mj = 0 if draw(st.integers(0, 9)) == 0 else counter_mj + round((gap_j + energy_j) * 1000)
        counters[seq] = draw(st.one_of(st.just(counter_mj), st.none()))
        windows.append(
            GpuWindowIn(
                device_id=0,
                seq=seq,
                start=cursor,
                end=cursor + timedelta(seconds=length_s),
                energy_j=energy_j,
                avg_power_w=power_w,
                util_pct=draw(st.floats(0.0, 100.0)),
                quality=Quality.MEASURED,
                idle_power_w=60.0,
                processes=draw(processes),
            )
        )
        cursor += timedelta(seconds=length_s)
    return windows, counters


@PROPERTY_SETTINGS
@given(
    device_batches(),
    st.lists(
        st.builds(
            Allocation,
            job_id=st.integers(1, 3),
            device_id=st.just(0),
            start=st.integers(-60, 4_000).map(lambda s: T0 + timedelta(seconds=s)),
            end=st.none(),
            fraction=fractions,
        ),
        max_size=3,
    ),
)
def test_gap_filling_adds_only_declared_energy_and_attribution_conserves_it(batch, allocations):
    windows, counters = batch
    filled = fill_gaps(windows=windows, previous=None, counters=counters, max_interpolate_s=60.0)

    synthesized = [w for w in filled.windows if w not in windows]
    assert len(filled.windows) == len(windows) + len(synthesized)
    assert [w.start for w in filled.windows] == sorted(w.start for w in filled.windows)
    filled_gaps = [g for g in filled.gaps if g.energy_j is not None]
    assert [(g.start, g.end, g.energy_j) for g in filled_gaps] == [(w.start, w.end, w.energy_j) for w in synthesized]
    for gap in filled.gaps:
        if gap.resolution is GapResolution.UNFILLED:
            assert gap.energy_j is None
            assert gap.duration_s > 60.0
        else:
            assert gap.energy_j >= 0.0
    assert all(
        (g.resolution is GapResolution.COUNTER) == (w.quality is Quality.MEASURED)
        for g, w in zip(filled_gaps, synthesized, strict=True)
    )

    total_j = math.fsum([w.energy_j for w in windows] + [g.energy_j for g in filled_gaps])
    result = run(filled.windows, [], allocations, 1)
    assert_close(math.fsum(s.energy_j for s in result.shares), total_j, scale=total_j)


@PROPERTY_SETTINGS
@given(scenarios(), st.floats(min_value=1.0, max_value=3.0, allow_nan=False), st.floats(0.0, 1_000.0))
def test_carbon_lines_keep_it_energy_and_add_facility(scenario, pue, intensity):
    gpu_windows, host_windows, allocations, slots = scenario
    shares = run(gpu_windows, host_windows, allocations, slots).shares
    lines = carbonize(
        shares=shares,
        pue_at=lambda hour: (pue, 1),
        intensity_at=lambda hour: IntensityPoint(
            intensity_g_per_kwh=intensity,
            source="annual:test",
            low_g_per_kwh=intensity * 0.8,
            high_g_per_kwh=intensity * 1.2,
        ),
        embodied_rates={device: EmbodiedRate(0.001, 0.0005, 0.002, 1) for device in range(5)},
        factor_versions={},
    )
    totals = summarise(lines)
    it_j = math.fsum(s.energy_j for s in shares)
    assert_close(totals.it_energy_j, it_j, scale=it_j)
    assert_close(totals.energy_j, it_j * pue, scale=it_j * pue)
    assert_close(totals.co2e_operational_g, it_j * pue / 3.6e6 * intensity, scale=it_j * pue)
    assert_close(totals.co2e_embodied_g, totals.held_s * 0.001, scale=totals.held_s)
    for line in lines:
        central = line.co2e_operational_g + line.co2e_embodied_g
        assert line.co2e_low_g <= central * (1 + 1e-12) and central <= line.co2e_high_g * (1 + 1e-12)
