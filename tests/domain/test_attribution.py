"""Attribution rules, one hand-worked case each (DESIGN.md §3)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from accounting.domain.attribution import Attribution, attribute
from accounting.domain.types import (
    Account,
    Allocation,
    Component,
    GpuWindowIn,
    HostWindowIn,
    MigInstanceSample,
    ProcessSample,
    Quality,
)

T0 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
H10 = T0
H11 = T0 + timedelta(hours=1)
JOB, FLEET = Account.JOB, Account.FLEET_OVERHEAD
ACTIVE, IDLE = Component.GPU_ACTIVE, Component.GPU_IDLE
CPU, DRAM, UNMEASURED = Component.HOST_CPU, Component.HOST_DRAM, Component.HOST_UNMEASURED


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def gpu(
    device_id: int = 0,
    start_s: float = 0,
    end_s: float = 60,
    *,
    energy_j: float = 18_000.0,
    idle_w: float = 60.0,
    processes: tuple[ProcessSample, ...] = (),
    quality: Quality = Quality.MEASURED,
    seq: int = 1,
    mig_instances: tuple[MigInstanceSample, ...] = (),
) -> GpuWindowIn:
    return GpuWindowIn(
        device_id=device_id,
        seq=seq,
        start=at(start_s),
        end=at(end_s),
        energy_j=energy_j,
        avg_power_w=energy_j / (end_s - start_s),
        util_pct=50.0,
        quality=quality,
        idle_power_w=idle_w,
        processes=processes,
        mig_instances=mig_instances,
    )


def alloc(job_id: int, device_id: int = 0, start_s: float = -3600, end_s: float | None = None, **kw) -> Allocation:
    return Allocation(
        job_id=job_id,
        device_id=device_id,
        start=at(start_s),
        end=None if end_s is None else at(end_s),
        **kw,
    )


def host(start_s=0, end_s=60, *, cpu_j=6_000.0, dram_j=1_200.0, wall_j=None, quality=Quality.MEASURED, seq=1):
    return HostWindowIn(
        seq=seq,
        start=at(start_s),
        end=at(end_s),
        cpu_energy_j=cpu_j,
        dram_energy_j=dram_j,
        quality=quality,
        wall_energy_j=wall_j,
    )


def proc(pid: int, util: float, key: str | None) -> ProcessSample:
    return ProcessSample(pid=pid, sm_util_pct=util, job_key=key)


def table(result: Attribution) -> dict:
    """(account, job, device, component, hour) -> (energy_j, held_s, quality)."""
    out = {}
    for s in result.shares:
        key = (s.account, s.job_id, s.device_id, s.component, s.hour)
        assert key not in out, f"share key {key} emitted twice"
        out[key] = (s.energy_j, s.held_s, s.quality)
    return out


def assert_table(result: Attribution, expected: dict) -> None:
    got = table(result)
    assert set(got) == set(expected)
    for key, (energy_j, held_s, *quality) in expected.items():
        assert got[key][0] == pytest.approx(energy_j, rel=1e-12, abs=1e-9), key
        assert got[key][1] == pytest.approx(held_s, rel=1e-12, abs=1e-9), key
        assert got[key][2] is (quality[0] if quality else Quality.MEASURED), key


def run(gpu_windows, allocations, host_windows=(), host_gpu_slots=8) -> Attribution:
    return attribute(
        gpu_windows=gpu_windows, host_windows=host_windows, allocations=allocations, host_gpu_slots=host_gpu_slots
    )


# Baseline window: 60 s, 18,000 J (300 W), catalog idle 60 W -> idle 3,600 J, active 14,400 J.


def test_exclusive_job_gets_everything_idle_included():
    result = run([gpu()], [alloc(1)])
    assert_table(
        result,
        {
            (JOB, 1, 0, IDLE, H10): (3_600.0, 0.0),
            (JOB, 1, 0, ACTIVE, H10): (14_400.0, 60.0),
        },
    )
    assert result.diagnostics == []


def test_unallocated_device_goes_to_fleet_overhead_with_its_time():
    assert_table(
        run([gpu()], []),
        {
            (FLEET, None, 0, IDLE, H10): (3_600.0, 0.0),
            (FLEET, None, 0, ACTIVE, H10): (14_400.0, 60.0),
        },
    )


def test_allocation_starting_mid_window_splits_by_time():
    # 0-15 s unallocated (1/4), 15-60 s held (3/4).
    assert_table(
        run([gpu()], [alloc(1, start_s=15)]),
        {
            (FLEET, None, 0, IDLE, H10): (900.0, 0.0),
            (FLEET, None, 0, ACTIVE, H10): (3_600.0, 15.0),
            (JOB, 1, 0, IDLE, H10): (2_700.0, 0.0),
            (JOB, 1, 0, ACTIVE, H10): (10_800.0, 45.0),
        },
    )


def test_allocation_ending_mid_window_and_allocations_of_other_devices_ignored():
    # Held 0-40 s (2/3); device 9 has no windows on this host.
    assert_table(
        run([gpu()], [alloc(1, end_s=40), alloc(2, device_id=9)]),
        {
            (JOB, 1, 0, IDLE, H10): (2_400.0, 0.0),
            (JOB, 1, 0, ACTIVE, H10): (9_600.0, 40.0),
            (FLEET, None, 0, IDLE, H10): (1_200.0, 0.0),
            (FLEET, None, 0, ACTIVE, H10): (4_800.0, 20.0),
        },
    )


def test_window_across_an_hour_is_split_pro_rata():
    # 10:50-11:10, 360,000 J at 300 W, idle 60 W x 1,200 s = 72,000 J; half in each hour.
    window = gpu(start_s=50 * 60, end_s=70 * 60, energy_j=360_000.0)
    assert_table(
        run([window], [alloc(1)]),
        {
            (JOB, 1, 0, IDLE, H10): (36_000.0, 0.0),
            (JOB, 1, 0, ACTIVE, H10): (144_000.0, 600.0),
            (JOB, 1, 0, IDLE, H11): (36_000.0, 0.0),
            (JOB, 1, 0, ACTIVE, H11): (144_000.0, 600.0),
        },
    )


def test_idle_baseline_capped_at_measured_energy():
    # 30 W measured against a 60 W catalog idle: all of it is idle baseline.
    assert_table(
        run([gpu(energy_j=1_800.0)], [alloc(1)]),
        {
            (JOB, 1, 0, IDLE, H10): (1_800.0, 0.0),
            (JOB, 1, 0, ACTIVE, H10): (0.0, 60.0),
        },
    )


def test_shared_gpu_active_split_by_sm_util_idle_by_fraction():
    window = gpu(processes=(proc(11, 60.0, "slurm:1"), proc(22, 20.0, "slurm:2")))
    allocations = [
        alloc(1, fraction=0.5, job_keys=frozenset({"slurm:1"})),
        alloc(2, fraction=0.5, job_keys=frozenset({"slurm:2"})),
    ]
    # Active 14,400 J: 60/80 and 20/80. Idle 3,600 J: half each.
    assert_table(
        run([window], allocations),
        {
            (JOB, 1, 0, IDLE, H10): (1_800.0, 0.0),
            (JOB, 1, 0, ACTIVE, H10): (10_800.0, 30.0),
            (JOB, 2, 0, IDLE, H10): (1_800.0, 0.0),
            (JOB, 2, 0, ACTIVE, H10): (3_600.0, 30.0),
        },
    )


def test_mig_slices_without_process_data_split_by_fraction_rest_idle_to_fleet():
    allocations = [alloc(1, fraction=0.25, mig_instance="1g"), alloc(2, fraction=0.5, mig_instance="3g")]
    # Active 14,400 J by 0.25 : 0.5 -> 4,800 / 9,600. Idle 3,600 J: 900 / 1,800 / 900 unheld.
    assert_table(
        run([gpu()], allocations),
        {
            (JOB, 1, 0, IDLE, H10): (900.0, 0.0),
            (JOB, 1, 0, ACTIVE, H10): (4_800.0, 15.0),
            (JOB, 2, 0, IDLE, H10): (1_800.0, 0.0),
            (JOB, 2, 0, ACTIVE, H10): (9_600.0, 30.0),
            (FLEET, None, 0, IDLE, H10): (900.0, 0.0),
            (FLEET, None, 0, ACTIVE, H10): (0.0, 15.0),
        },
    )


def mig(gi: int, slices: int, activity: float | None, *keys: str) -> MigInstanceSample:
    return MigInstanceSample(gpu_instance_id=gi, slices=slices, activity=activity, job_keys=frozenset(keys))


def test_mig_active_energy_follows_measured_instance_activity_idle_by_slice_fraction():
    # An A30 (4 slices): job 1 on a 2g instance (fraction 0.5, activity 0.75), job 2 on a 1g
    # instance (0.25, activity 0.5), one 1g slice free. Work = activity x slices: 1.5 and 0.5.
    window = gpu(mig_instances=(mig(1, 2, 0.75, "k8s:a"), mig(5, 1, 0.5, "k8s:b"), mig(6, 1, 0.0)))
    allocations = [
        alloc(1, fraction=0.5, job_keys=frozenset({"k8s:a"})),
        alloc(2, fraction=0.25, job_keys=frozenset({"k8s:b"})),
    ]
    result = attribute(gpu_windows=[window], host_windows=[], allocations=allocations, host_gpu_slots=1)
    # Active 14,400 J by 1.5 : 0.5 -> 10,800 / 3,600 (by slice fraction it would be 9,600 / 4,800).
    # Idle 3,600 J by slice fraction: 1,800 / 900, the free slice's 900 to the fleet.
    assert_table(
        result,
        {
            (JOB, 1, 0, IDLE, H10): (1_800.0, 0.0),
            (JOB, 1, 0, ACTIVE, H10): (10_800.0, 30.0),
            (JOB, 2, 0, IDLE, H10): (900.0, 0.0),
            (JOB, 2, 0, ACTIVE, H10): (3_600.0, 15.0),
            (FLEET, None, 0, IDLE, H10): (900.0, 0.0),
            (FLEET, None, 0, ACTIVE, H10): (0.0, 15.0),
        },
    )
    assert result.diagnostics == []


def test_mig_instance_without_measured_activity_splits_by_slice_fraction_and_is_flagged():
    window = gpu(mig_instances=(mig(1, 2, 0.75, "k8s:a"), mig(5, 1, None, "k8s:b")))
    allocations = [
        alloc(1, fraction=0.5, job_keys=frozenset({"k8s:a"})),
        alloc(2, fraction=0.25, job_keys=frozenset({"k8s:b"})),
    ]
    result = attribute(gpu_windows=[window], host_windows=[], allocations=allocations, host_gpu_slots=1)
    assert_table(
        result,
        {
            (JOB, 1, 0, IDLE, H10): (1_800.0, 0.0),
            (JOB, 1, 0, ACTIVE, H10): (9_600.0, 30.0),
            (JOB, 2, 0, IDLE, H10): (900.0, 0.0),
            (JOB, 2, 0, ACTIVE, H10): (4_800.0, 15.0),
            (FLEET, None, 0, IDLE, H10): (900.0, 0.0),
            (FLEET, None, 0, ACTIVE, H10): (0.0, 15.0),
        },
    )
    assert [(d.code, d.device_id, d.start, d.end) for d in result.diagnostics] == [
        ("mig_activity_unavailable", 0, at(0), at(60))
    ]


def test_mig_instance_no_holder_ran_on_is_split_among_holders_by_fraction():
    # A 3g instance at full activity whose pod holds no allocation (work 3.0) beside the two
    # jobs' 1.5 and 0.5: its 3.0 goes 2:1 by fraction, so job 1 has 3.5 / 5 and job 2 1.5 / 5.
    window = gpu(mig_instances=(mig(1, 2, 0.75, "k8s:a"), mig(5, 1, 0.5, "k8s:b"), mig(2, 3, 1.0, "k8s:z")))
    allocations = [
        alloc(1, fraction=0.5, job_keys=frozenset({"k8s:a"})),
        alloc(2, fraction=0.25, job_keys=frozenset({"k8s:b"})),
    ]
    shares = {
        (s.job_id, s.component): s.energy_j
        for s in attribute(gpu_windows=[window], host_windows=[], allocations=allocations, host_gpu_slots=1).shares
    }
    assert shares[(1, ACTIVE)] == pytest.approx(14_400.0 * 3.5 / 5, rel=1e-15)
    assert shares[(2, ACTIVE)] == pytest.approx(14_400.0 * 1.5 / 5, rel=1e-15)
    assert shares[(1, ACTIVE)] + shares[(2, ACTIVE)] == pytest.approx(14_400.0, rel=1e-15)


def test_mig_instance_checks_name_the_instance():
    bad = gpu(mig_instances=(mig(3, 1, 1.5, "k8s:a"),))
    with pytest.raises(ValueError, match="GPU window device 0 seq 1 MIG instance 3 activity must be in"):
        attribute(gpu_windows=[bad], host_windows=[], allocations=[], host_gpu_slots=1)
    with pytest.raises(ValueError, match="MIG instance 3 slices must be an int >= 1"):
        attribute(gpu_windows=[gpu(mig_instances=(mig(3, 0, 0.5),))], host_windows=[], allocations=[], host_gpu_slots=1)


def test_one_job_on_two_mig_slices_is_one_holder():
    allocations = [alloc(1, fraction=0.25, mig_instance="a"), alloc(1, fraction=0.25, mig_instance="b")]
    assert_table(
        run([gpu()], allocations),
        {
            (JOB, 1, 0, IDLE, H10): (1_800.0, 0.0),
            (JOB, 1, 0, ACTIVE, H10): (14_400.0, 30.0),
            (FLEET, None, 0, IDLE, H10): (1_800.0, 0.0),
            (FLEET, None, 0, ACTIVE, H10): (0.0, 30.0),
        },
    )


def test_unmatched_process_util_is_split_among_holders_by_fraction():
    window = gpu(
        processes=(
            proc(1, 40.0, "slurm:1"),
            proc(2, 20.0, "slurm:2"),
            proc(3, 20.0, None),  # agent could not map it
            proc(4, 20.0, "slurm:99"),  # a job that does not hold this device
        )
    )
    allocations = [
        alloc(1, fraction=0.5, job_keys=frozenset({"slurm:1"})),
        alloc(2, fraction=0.5, job_keys=frozenset({"slurm:2"})),
    ]
    # Matched 60 of 100; unmatched 40 split 20/20: job 1 60/100, job 2 40/100 of 14,400 J.
    table_ = table(run([window], allocations))
    assert table_[(JOB, 1, 0, ACTIVE, H10)][0] == pytest.approx(8_640.0, rel=1e-12)
    assert table_[(JOB, 2, 0, ACTIVE, H10)][0] == pytest.approx(5_760.0, rel=1e-12)


def test_processes_matching_no_holder_fall_back_to_fraction():
    window = gpu(processes=(proc(1, 90.0, None), proc(2, 10.0, "k8s:other")))
    allocations = [alloc(1, fraction=0.25), alloc(2, fraction=0.75)]
    table_ = table(run([window], allocations))
    assert table_[(JOB, 1, 0, ACTIVE, H10)][0] == 3_600.0
    assert table_[(JOB, 2, 0, ACTIVE, H10)][0] == 10_800.0


def test_single_partial_holder_gets_all_active_energy():
    # Whatever runs on a held device is the holder's; only idle of the unheld part is the fleet's.
    window = gpu(processes=(proc(1, 50.0, None),))
    assert_table(
        run([window], [alloc(1, fraction=0.5)]),
        {
            (JOB, 1, 0, IDLE, H10): (1_800.0, 0.0),
            (JOB, 1, 0, ACTIVE, H10): (14_400.0, 30.0),
            (FLEET, None, 0, IDLE, H10): (1_800.0, 0.0),
            (FLEET, None, 0, ACTIVE, H10): (0.0, 30.0),
        },
    )


def test_oversubscribed_time_slicing_is_normalised_and_reported():
    window = gpu(processes=(proc(1, 30.0, "slurm:1"), proc(2, 10.0, "slurm:2")))
    allocations = [
        alloc(1, fraction=1.0, job_keys=frozenset({"slurm:1"})),
        alloc(2, fraction=1.0, job_keys=frozenset({"slurm:2"})),
    ]
    result = run([window], allocations)
    assert_table(
        result,
        {
            (JOB, 1, 0, IDLE, H10): (1_800.0, 0.0),
            (JOB, 1, 0, ACTIVE, H10): (10_800.0, 30.0),
            (JOB, 2, 0, IDLE, H10): (1_800.0, 0.0),
            (JOB, 2, 0, ACTIVE, H10): (3_600.0, 30.0),
        },
    )
    assert [(d.code, d.device_id, d.start, d.end) for d in result.diagnostics] == [
        ("gpu_oversubscribed", 0, at(0), at(60))
    ]


def test_key_claimed_by_two_holders_is_shared_equally():
    window = gpu(processes=(proc(1, 50.0, "shared"),))
    allocations = [
        alloc(1, fraction=0.5, job_keys=frozenset({"shared"})),
        alloc(2, fraction=0.5, job_keys=frozenset({"shared"})),
    ]
    table_ = table(run([window], allocations))
    assert table_[(JOB, 1, 0, ACTIVE, H10)][0] == 7_200.0
    assert table_[(JOB, 2, 0, ACTIVE, H10)][0] == 7_200.0


def test_share_quality_is_worst_of_contributing_windows():
    windows = [gpu(start_s=0, end_s=60, seq=1), gpu(start_s=60, end_s=120, seq=-1, quality=Quality.INTERPOLATED)]
    table_ = table(run(windows, [alloc(1)]))
    assert table_[(JOB, 1, 0, ACTIVE, H10)] == (28_800.0, 120.0, Quality.INTERPOLATED)


def _ten_windows_one_counter_reset() -> list[GpuWindowIn]:
    # 10 x 60 s of 18,000 J (idle 3,600 J + active 14,400 J); seq 5's counter was reset (driver
    # reload), so its energy is integrated from power samples instead of measured.
    return [
        gpu(start_s=60 * i, end_s=60 * (i + 1), seq=i, quality=Quality.INTEGRATED if i == 5 else Quality.MEASURED)
        for i in range(10)
    ]


@pytest.mark.parametrize("batch_sizes", [(10,), (1,) * 10, (2, 8), (8, 2)])
def test_measured_energy_is_per_window_whatever_the_batching(batch_sizes):
    # Issue 19: a line labelled with its worst window's quality made the measured share depend
    # on batching (one batch: 0 % measured; ten batches: 90 %). Measured energy is carried per
    # window: 9 x 3,600 J idle and 9 x 14,400 J active, 162,000 of 180,000 J = exactly 0.9.
    windows = _ten_windows_one_counter_reset()
    sums: dict[Component, list[float]] = {IDLE: [0.0, 0.0], ACTIVE: [0.0, 0.0]}
    start = 0
    for size in batch_sizes:
        for s in run(windows[start : start + size], [alloc(1)]).shares:
            assert (s.account, s.job_id, s.device_id, s.hour) == (JOB, 1, 0, H10)
            # The label stays "worst window of the line": integrated only for the batch with seq 5.
            assert s.quality is (Quality.INTEGRATED if start <= 5 < start + size else Quality.MEASURED)
            sums[s.component][0] += s.energy_j
            sums[s.component][1] += s.measured_energy_j
        start += size
    assert sums == {IDLE: [36_000.0, 32_400.0], ACTIVE: [144_000.0, 129_600.0]}
    measured_j = sums[IDLE][1] + sums[ACTIVE][1]
    assert measured_j / (sums[IDLE][0] + sums[ACTIVE][0]) == 0.9


def _eight_gpus() -> list[GpuWindowIn]:
    return [gpu(device_id=d, energy_j=12_000.0) for d in range(8)]


def test_host_energy_shared_by_gpu_slots_two_of_eight():
    allocations = [alloc(1, device_id=0), alloc(1, device_id=1)]
    result = run(_eight_gpus(), allocations, [host()], host_gpu_slots=8)
    table_ = table(result)
    # 2/8 of 6,000 J CPU and 1,200 J DRAM.
    assert table_[(JOB, 1, None, CPU, H10)] == (1_500.0, 0.0, Quality.MEASURED)
    assert table_[(JOB, 1, None, DRAM, H10)] == (300.0, 0.0, Quality.MEASURED)
    assert table_[(FLEET, None, None, CPU, H10)] == (4_500.0, 0.0, Quality.MEASURED)
    assert table_[(FLEET, None, None, DRAM, H10)] == (900.0, 0.0, Quality.MEASURED)
    assert (JOB, 1, None, UNMEASURED, H10) not in table_


def test_host_share_follows_allocation_time_and_fraction():
    # Job 1 holds device 0 from 30 s; job 2 holds half of device 1 throughout.
    allocations = [alloc(1, device_id=0, start_s=30), alloc(2, device_id=1, fraction=0.5)]
    table_ = table(run(_eight_gpus(), allocations, [host(quality=Quality.MODELLED)]))
    # Job 1: 1/8 over the second half = 6,000 x 0.5 x 1/8 = 375 J CPU.
    # Job 2: 0.5/8 over the whole window = 6,000 x 1/16 = 375 J CPU.
    assert table_[(JOB, 1, None, CPU, H10)] == (375.0, 0.0, Quality.MODELLED)
    assert table_[(JOB, 2, None, CPU, H10)] == (375.0, 0.0, Quality.MODELLED)
    assert table_[(FLEET, None, None, CPU, H10)][0] == 5_250.0
    assert table_[(JOB, 2, None, DRAM, H10)][0] == 75.0


def test_host_oversubscribed_gpu_counts_as_one_slot():
    allocations = [alloc(1, device_id=0), alloc(2, device_id=0)]
    table_ = table(run(_eight_gpus(), allocations, [host()], host_gpu_slots=8))
    # Device 0 shared by two jobs: each gets 1/2 of 1/8 of the host.
    assert table_[(JOB, 1, None, CPU, H10)][0] == 375.0
    assert table_[(JOB, 2, None, CPU, H10)][0] == 375.0
    assert table_[(FLEET, None, None, CPU, H10)][0] == 5_250.0


def test_host_window_across_hour_split_pro_rata():
    table_ = table(
        run([gpu(device_id=0, start_s=3_540, end_s=3_660)], [alloc(1)], [host(3_540, 3_660)], host_gpu_slots=1)
    )
    assert table_[(JOB, 1, None, CPU, H10)][0] == 3_000.0
    assert table_[(JOB, 1, None, CPU, H11)][0] == 3_000.0


def test_more_gpus_than_slots_divides_by_gpus_and_reports():
    result = run(_eight_gpus(), [alloc(1, device_id=0)], [host()], host_gpu_slots=4)
    table_ = table(result)
    assert table_[(JOB, 1, None, CPU, H10)][0] == 750.0
    assert [d.code for d in result.diagnostics] == ["host_slots_exceeded"]


def test_wall_energy_above_components_is_reported_as_unmeasured():
    # 2 GPUs x 12,000 J + CPU 6,000 + DRAM 1,200 = 31,200 J measured; wall 36,000 -> 4,800 J.
    windows = [gpu(device_id=0, energy_j=12_000.0), gpu(device_id=1, energy_j=12_000.0, quality=Quality.INTEGRATED)]
    result = run(windows, [alloc(1, device_id=0)], [host(wall_j=36_000.0)], host_gpu_slots=4)
    table_ = table(result)
    assert table_[(JOB, 1, None, UNMEASURED, H10)] == (1_200.0, 0.0, Quality.INTEGRATED)
    assert table_[(FLEET, None, None, UNMEASURED, H10)] == (3_600.0, 0.0, Quality.INTEGRATED)
    assert table_[(JOB, 1, None, CPU, H10)] == (1_500.0, 0.0, Quality.MEASURED)
    assert result.diagnostics == []


def test_wall_energy_below_components_is_a_diagnostic_not_a_correction():
    windows = [gpu(device_id=0, energy_j=12_000.0), gpu(device_id=1, energy_j=12_000.0)]
    result = run(windows, [alloc(1, device_id=0)], [host(wall_j=30_000.0)], host_gpu_slots=4)
    table_ = table(result)
    assert not any(key[3] is UNMEASURED for key in table_)
    assert table_[(JOB, 1, None, CPU, H10)][0] == 1_500.0
    [diagnostic] = result.diagnostics
    assert (diagnostic.code, diagnostic.energy_j, diagnostic.start, diagnostic.end) == (
        "wall_below_measured",
        -1_200.0,
        at(0),
        at(60),
    )


def test_wall_matches_gpu_windows_by_time_overlap():
    # Two 30 s GPU windows (one a gap fill) inside one 60 s host window.
    windows = [gpu(start_s=0, end_s=30, energy_j=6_000.0), gpu(start_s=30, end_s=90, energy_j=12_000.0, seq=-1)]
    # GPU energy inside 0-60 s: 6,000 + 12,000 x 30/60 = 12,000; wall 20,000 - (12,000 + 6,000 + 1,200) = 800.
    table_ = table(run(windows, [], [host(wall_j=20_000.0)], host_gpu_slots=1))
    assert table_[(FLEET, None, None, UNMEASURED, H10)][0] == pytest.approx(800.0, rel=1e-12)


def test_cpu_only_host_without_slots_is_all_fleet():
    table_ = table(run([], [alloc(1)], [host()], host_gpu_slots=0))
    assert table_ == {
        (FLEET, None, None, CPU, H10): (6_000.0, 0.0, Quality.MEASURED),
        (FLEET, None, None, DRAM, H10): (1_200.0, 0.0, Quality.MEASURED),
    }


def test_shares_are_sorted_and_hours_are_utc():
    tz = timezone(timedelta(hours=2))
    window = GpuWindowIn(
        device_id=0,
        seq=1,
        start=datetime(2026, 3, 2, 12, 50, tzinfo=tz),
        end=datetime(2026, 3, 2, 13, 10, tzinfo=tz),
        energy_j=1_200.0,
        avg_power_w=1.0,
        util_pct=0.0,
        quality=Quality.MEASURED,
        idle_power_w=0.0,
    )
    result = run([window], [])
    assert [s.hour for s in result.shares] == [H10, H11]
    assert all(s.hour.tzinfo is UTC for s in result.shares)


@pytest.mark.parametrize(
    "kwargs",
    [
        {
            "gpu_windows": [
                GpuWindowIn(
                    0, 1, datetime(2026, 1, 1), datetime(2026, 1, 1, 0, 1), 1.0, 1.0, 0.0, Quality.MEASURED, 0.0
                )
            ]
        },
        {"gpu_windows": [GpuWindowIn(0, 1, at(60), at(60), 1.0, 1.0, 0.0, Quality.MEASURED, 0.0)]},
        {"gpu_windows": [gpu(energy_j=-1.0)]},
        {"gpu_windows": [gpu(energy_j=float("nan"))]},
        {"gpu_windows": [gpu(processes=(proc(1, -5.0, None),))]},
        {"allocations": [alloc(1, fraction=0.0)]},
        {"allocations": [alloc(1, fraction=1.5)]},
        {"allocations": [alloc(1, start_s=60, end_s=0)]},
        {"host_windows": [host(cpu_j=-1.0)]},
        {"host_windows": [host(wall_j=float("inf"))]},
        {"host_gpu_slots": -1},
    ],
)
def test_rejects_invalid_input(kwargs):
    arguments = {"gpu_windows": [gpu()], "host_windows": [], "allocations": [], "host_gpu_slots": 8} | kwargs
    with pytest.raises(ValueError):
        attribute(**arguments)
