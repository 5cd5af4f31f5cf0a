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
