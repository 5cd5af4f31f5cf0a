"""dcgm-exporter parsing: exposition format, two scrapes -> wire-format windows and profiling ratios."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from telemetry.dcgm import (
    ExpositionError,
    parse_exposition,
    profiling_ratios,
    scrape_parse,
    windows_from_scrapes,
)

DATA = Path(__file__).parent / "data"
T0 = dt.datetime(2026, 11, 26, 10, 0, 0, tzinfo=dt.UTC)
T1 = T0 + dt.timedelta(seconds=10)
GPU0 = "GPU-5c3c6e2e-0000-4000-8000-000000000001"
GPU1 = "GPU-5c3c6e2e-0000-4000-8000-000000000002"


@pytest.fixture
def scrapes():
    return (
        scrape_parse(text=(DATA / "dcgm_scrape_t0.prom").read_text(), at=T0),
        scrape_parse(text=(DATA / "dcgm_scrape_t1.prom").read_text(), at=T1),
    )


def test_parse_exposition_labels_escapes_and_timestamps():
    text = '# HELP x y\nm{a="1",b="q\\"uote\\\\",c="line\\nbreak"} 2.5 1700000000000\nplain 3\nnan_metric NaN\n\n'
    samples = parse_exposition(text)
    assert [(s.name, s.labels) for s in samples] == [
        ("m", {"a": "1", "b": 'q"uote\\', "c": "line\nbreak"}),
        ("plain", {}),
        ("nan_metric", {}),
    ]
    assert samples[0].value == 2.5 and samples[1].value == 3.0
    with pytest.raises(ExpositionError, match="line 1"):
        parse_exposition("m{a=1} 2")
    with pytest.raises(ExpositionError, match="bad value"):
        parse_exposition("m twelve")


def test_scrape_groups_by_uuid_with_job_labels(scrapes):
    first, _ = scrapes
    assert set(first.gpus) == {GPU0, GPU1}
    gpu0 = first.gpus[GPU0]
    assert (gpu0.index, gpu0.name, gpu0.hostname, gpu0.pod, gpu0.namespace, gpu0.hpc_job) == (
        0,
        "NVIDIA H100 80GB HBM3",
        "gpu-node-01",
        "llm-sft-0",
        "ml",
        None,
    )
    assert gpu0.metrics["DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION"] == 123456789000
    assert first.gpus[GPU1].hpc_job == "88123"


def test_two_scrapes_make_a_wire_format_window(scrapes):
    first, second = scrapes
    window = windows_from_scrapes(
        previous=first,
        current=second,
        seq=7,
        pod_uid=lambda ns, pod: {("ml", "llm-sft-0"): "3f6c1f0e-uid"}.get((ns, pod)),
    )
    assert (window["seq"], window["start"], window["end"]) == (7, "2026-11-26T10:00:00Z", "2026-11-26T10:00:10Z")
    gpu0, gpu1 = window["gpus"]
    # Counter delta: 6,500,000 mJ over 10 s.
    assert gpu0 == {
        "uuid": GPU0,
        "index": 0,
        "name": "NVIDIA H100 80GB HBM3",
        "energy_j": 6500.0,
        "counter_mj": 123463289000,
        "avg_power_w": 650.0,
        "max_power_w": 655.5,
        "util_pct": 98.5,
        "mem_util_pct": 41.0,
        "mem_used_mib": 71234.0,
        "power_limit_w": None,
        "quality": "measured",
        "processes": [{"pid": None, "sm_util_pct": pytest.approx(92.3), "job_key": "k8s:3f6c1f0e-uid"}],
    }
    # Counter reset between scrapes: trapezoid of 250 W and 270 W over 10 s.
    assert (gpu1["energy_j"], gpu1["avg_power_w"], gpu1["quality"]) == (2600.0, 260.0, "integrated")
    assert gpu1["processes"][0]["job_key"] == "slurm:88123"


def test_profiling_ratios_are_the_mean_of_two_scrapes(scrapes):
    ratios = profiling_ratios(previous=scrapes[0], current=scrapes[1])
    assert ratios[GPU0].sm_active == pytest.approx(0.923)
    assert ratios[GPU0].tensor_active == pytest.approx(0.492)
    assert ratios[GPU0].dram_active == pytest.approx(0.41)
    assert ratios[GPU1].tensor_active == pytest.approx(0.056)


def test_gpu_new_in_the_current_scrape_and_bad_order(scrapes):
    first, second = scrapes
    empty = scrape_parse(text="", at=T0)
    assert windows_from_scrapes(previous=empty, current=second, seq=1)["gpus"] == []
    with pytest.raises(ValueError, match="later"):
        windows_from_scrapes(previous=second, current=first, seq=1)
    unmapped = windows_from_scrapes(previous=first, current=second, seq=1)
    assert unmapped["gpus"][0]["processes"] == []  # a pod without a uid resolver: no job key


# --- MIG, time-slicing, MPS and label variants, in the exporter's own format ------------------

MIG_GPU = "GPU-8a1c2f3e-0000-4000-8000-00000000a100"
SHARED_GPU = "GPU-8a1c2f3e-0000-4000-8000-00000000b200"
UID_A = "6f1d0c7a-aaaa-4000-8000-000000000001"
UID_B = "6f1d0c7a-bbbb-4000-8000-000000000002"


def _pair(stem: str):
    return (
        scrape_parse(text=(DATA / f"{stem}_t0.prom").read_text(), at=T0),
        scrape_parse(text=(DATA / f"{stem}_t1.prom").read_text(), at=T1),
    )


def test_two_pods_on_two_mig_instances_of_one_gpu_are_kept_apart():
    first, second = _pair("dcgm_mig")
    gpu = first.gpus[MIG_GPU]
    assert gpu.hostname == "gpu-node-02"  # the 2026 ``hostname`` label
    assert sorted(gpu.instances) == [(1, None), (9, None), (10, None)]
    assert [(i.profile, i.slices) for _, i in sorted(gpu.instances.items())] == [
        ("3g.40gb", 3),
        ("1g.10gb", 1),
        ("1g.10gb", 1),
    ]
    assert [w.pod for w in gpu.instances[(1, None)].workloads] == ["infer-a"]
    assert [w.pod for w in gpu.instances[(9, None)].workloads] == ["infer-b"]
    assert gpu.workloads == {}  # device-level samples carry no pod

    window = windows_from_scrapes(previous=first, current=second, seq=3)
    (entry,) = window["gpus"]
    # The energy counter is the physical GPU's: 3,200,000 mJ over 10 s.
    assert (entry["energy_j"], entry["avg_power_w"], entry["quality"]) == (3200.0, 320.0, "measured")
    assert entry["mig_instances"] == [
        {
            "gpu_instance_id": 1,
            "compute_instance_id": None,
            "profile": "3g.40gb",
            "slices": 3,
            "activity": 0.8125,  # mean of 0.75 and 0.875
            "mem_used_mib": 30514.0,
            "job_keys": [f"k8s:{UID_A}"],
        },
        {
            "gpu_instance_id": 9,
            "compute_instance_id": None,
            "profile": "1g.10gb",
            "slices": 1,
            "activity": 0.375,  # mean of 0.25 and 0.5
            "mem_used_mib": 6140.0,
            "job_keys": [f"k8s:{UID_B}"],
        },
        {
            "gpu_instance_id": 10,
            "compute_instance_id": None,
            "profile": "1g.10gb",
            "slices": 1,
            "activity": 0.0,
            "mem_used_mib": 0.0,
            "job_keys": [],
        },
    ]
    # Both pods are there, each with its own instance's activity (pod_uid label: no resolver needed).
    assert entry["processes"] == [
        {"pid": None, "sm_util_pct": 81.25, "job_key": f"k8s:{UID_A}"},
        {"pid": None, "sm_util_pct": 37.5, "job_key": f"k8s:{UID_B}"},
    ]
    assert entry["mem_used_mib"] == 30514.0 + 6140.0


def test_time_sliced_pods_get_their_own_utilisation_not_the_devices():
    first, second = _pair("dcgm_timeslice")
    resolver = {("research", "nb-1"): "uid-nb-1", ("research", "nb-2"): "uid-nb-2"}
    window = windows_from_scrapes(
        previous=first, current=second, seq=1, pod_uid=lambda ns, pod: resolver.get((ns, pod))
    )
    (entry,) = window["gpus"]
    assert (entry["energy_j"], entry["util_pct"], entry["mem_used_mib"]) == (4300.0, 75.0, 40100.0)
    assert "mig_instances" not in entry
    assert entry["processes"] == [
        {"pid": None, "sm_util_pct": 52.5, "job_key": "k8s:uid-nb-1"},  # mean of 45 and 60
        {"pid": None, "sm_util_pct": 22.5, "job_key": "k8s:uid-nb-2"},  # mean of 25 and 20
    ]


def test_mps_pods_reading_zero_on_a_busy_gpu_get_no_utilisation():
    first, second = _pair("dcgm_mps")
    resolver = {("research", "nb-1"): "uid-nb-1", ("research", "nb-2"): "uid-nb-2"}
    window = windows_from_scrapes(
        previous=first, current=second, seq=1, pod_uid=lambda ns, pod: resolver.get((ns, pod))
    )
    (entry,) = window["gpus"]
    assert (entry["energy_j"], entry["util_pct"]) == (5000.0, 91.0)
    # The MPS server's pid is no pod's: null, so the server splits by allocation share.
    assert entry["processes"] == [
        {"pid": None, "sm_util_pct": None, "job_key": "k8s:uid-nb-1"},
        {"pid": None, "sm_util_pct": None, "job_key": "k8s:uid-nb-2"},
    ]


def test_old_namespace_mode_labels_parse():
    first, second = _pair("dcgm_oldnamespace")
    gpu = first.gpus[MIG_GPU]
    assert (gpu.hostname, gpu.pod, gpu.namespace) == ("gpu-node-04", "llm-sft-0", "ml")
    window = windows_from_scrapes(previous=first, current=second, seq=1, pod_uid=lambda ns, pod: f"{ns}-{pod}")
    (entry,) = window["gpus"]
    assert entry["energy_j"] == 6000.0
    assert entry["processes"] == [{"pid": None, "sm_util_pct": 50.0, "job_key": "k8s:ml-llm-sft-0"}]


def test_every_hpc_job_on_a_gpu_is_kept():
    line = 'DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION{{gpu="0",UUID="GPU-x",hostname="n",hpc_job="{job}"}} {value}\n'
    first = scrape_parse(text=line.format(job="11", value=1000) + line.format(job="12", value=1000), at=T0)
    second = scrape_parse(text=line.format(job="11", value=21000) + line.format(job="12", value=21000), at=T1)
    (entry,) = windows_from_scrapes(previous=first, current=second, seq=1)["gpus"]
    assert entry["energy_j"] == 20.0
    assert entry["processes"] == [
        {"pid": None, "sm_util_pct": None, "job_key": "slurm:11"},
        {"pid": None, "sm_util_pct": None, "job_key": "slurm:12"},
    ]


def test_a_scrape_without_gpus_is_said_clearly(caplog):
    from telemetry.dcgm import scrape_status

    text = 'DCGM_FI_DEV_POWER_USAGE{gpu="0",GPU="GPU-x",host="n"} 300\nup 1\n'
    with caplog.at_level("WARNING", logger="carbonledger.telemetry.dcgm"):
        scrape = scrape_parse(text=text, at=T0)
    assert scrape.gpus == {}
    assert scrape_status(scrape) == {
        "ok": False,
        "gpus": 0,
        "mig_instances": 0,
        "workloads": 0,
        "dcgm_samples": 1,
        "unkeyed_samples": 1,
    }
    assert "event=dcgm_scrape_no_gpu" in caplog.text and "no sample carries a UUID/uuid label" in caplog.text
    first, _ = _pair("dcgm_mig")
    assert scrape_status(first)["ok"] is True and scrape_status(first)["mig_instances"] == 3
    assert scrape_status(first)["workloads"] == 2
