"""Hardware catalog: keys, datasheet figures, sources, NVML name lookup."""

import dataclasses

import pytest

from accounting.domain.catalog import (
    CATALOG,
    KEY_ALIASES,
    PRECISIONS,
    DeviceSpec,
    canonical_key,
    key_aliases,
    lookup_by_name,
)

EXPECTED_KEYS = {
    "v100-sxm2-32gb",
    "a100-sxm4-40gb",
    "a100-sxm4-80gb",
    "h100-sxm5-80gb",
    "h100-pcie-80gb",
    "h200-sxm-141gb",
    "b200-sxm-180gb",
    "l4-24gb",
    "l40s-48gb",
    "t4-16gb",
    "mi250x-128gb",
    "mi300x-192gb",
}


def test_catalog_has_exactly_the_agreed_keys():
    assert set(CATALOG) == EXPECTED_KEYS
    assert all(spec.key == key for key, spec in CATALOG.items())


@pytest.mark.parametrize("key", sorted(EXPECTED_KEYS))
def test_every_spec_is_complete_sane_and_cited(key):
    spec = CATALOG[key]
    assert 0 < spec.idle_power_w < spec.max_power_w
    assert spec.peak_flops and set(spec.peak_flops) <= set(PRECISIONS)
    assert spec.peak_flops["fp32"] > 0
    assert spec.memory_gb > 0 and spec.memory_bandwidth_gb_s > 0 and spec.pcie_gb_s > 0
    assert spec.interconnect_gb_s >= 0
    assert 2017 <= spec.release_year <= 2025
    for name in (
        "idle_power_w",
        "max_power_w",
        "peak_flops",
        "memory_gb",
        "memory_bandwidth_gb_s",
        "interconnect_gb_s",
        "pcie_gb_s",
        "process_node_nm",
        "die_area_mm2",
        "release_year",
    ):
        assert spec.sources.get(name), f"{key}.{name} has no source"
    assert "typical observed idle" in spec.sources["idle_power_w"]
    # Lower precision is never slower than higher precision on the same device.
    rates = [spec.peak_flops[p] for p in ("fp32", "tf32", "bf16", "fp8") if p in spec.peak_flops]
    assert rates == sorted(rates)


def test_spec_is_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        CATALOG["h100-sxm5-80gb"].max_power_w = 1.0  # type: ignore[misc]
    with pytest.raises(TypeError):
        CATALOG["h100-sxm5-80gb"].peak_flops["bf16"] = 1.0  # type: ignore[index]


def test_datasheet_figures_dense_not_sparse():
    h100 = CATALOG["h100-sxm5-80gb"]
    assert h100.peak_flops["bf16"] == pytest.approx(989.4e12)
    assert h100.peak_flops["fp8"] == pytest.approx(1978.9e12)
    assert h100.memory_bandwidth_gb_s == 3350.0 and h100.max_power_w == 700.0
    a100 = CATALOG["a100-sxm4-80gb"]
    assert a100.peak_flops["bf16"] == pytest.approx(312e12) and a100.memory_bandwidth_gb_s == 2039.0
    assert CATALOG["a100-sxm4-40gb"].memory_bandwidth_gb_s == 1555.0
    assert CATALOG["v100-sxm2-32gb"].peak_flops["fp16"] == pytest.approx(125e12)
    assert CATALOG["h200-sxm-141gb"].memory_bandwidth_gb_s == 4800.0
    assert CATALOG["mi300x-192gb"].peak_flops["bf16"] == pytest.approx(1307.4e12)


def test_precision_fallback_to_next_wider_format():
    a100 = CATALOG["a100-sxm4-80gb"]
    assert a100.flops_at("fp8") == (312e12, "bf16")
    assert a100.flops_at("bf16") == (312e12, "bf16")
    assert CATALOG["v100-sxm2-32gb"].flops_at("bf16") == (125e12, "fp16")
    assert CATALOG["v100-sxm2-32gb"].flops_at("tf32") == (pytest.approx(15.7e12), "fp32")
    assert CATALOG["mi250x-128gb"].flops_at("fp8") == (383e12, "bf16")
    with pytest.raises(KeyError):
        a100.flops_at("fp3")


@pytest.mark.parametrize(
    ("reported", "key"),
    [
        ("NVIDIA H100 80GB HBM3", "h100-sxm5-80gb"),
        ("Tesla V100-SXM2-32GB", "v100-sxm2-32gb"),
        ("NVIDIA A100-SXM4-80GB", "a100-sxm4-80gb"),
        ("NVIDIA A100-SXM4-40GB", "a100-sxm4-40gb"),
        ("NVIDIA H100 PCIe", "h100-pcie-80gb"),
        ("  nvidia   h100 pcie ", "h100-pcie-80gb"),
        ("NVIDIA A100-SXM4-40GB MIG 1g.5gb", "a100-sxm4-40gb"),
        ("NVIDIA H200", "h200-sxm-141gb"),
        ("NVIDIA B200", "b200-sxm-180gb"),
        ("NVIDIA L4", "l4-24gb"),
        ("NVIDIA L40S", "l40s-48gb"),
        ("Tesla T4", "t4-16gb"),
        ("AMD Instinct MI250X", "mi250x-128gb"),
        ("AMD Instinct MI300X", "mi300x-192gb"),
        ("h100-sxm5-80gb", "h100-sxm5-80gb"),
        ("b200-sxm-192gb", "b200-sxm-180gb"),  # the old key, an alias
    ],
)
def test_lookup_by_name(reported, key):
    spec = lookup_by_name(reported)
    assert isinstance(spec, DeviceSpec) and spec.key == key


@pytest.mark.parametrize("reported", ["", "   ", "NVIDIA H200 NVL", "NVIDIA GeForce RTX 4090", "NVIDIA H100"])
def test_lookup_unknown_is_none_not_a_guess(reported):
    assert lookup_by_name(reported) is None


def test_b200_old_key_is_an_alias_of_the_180gb_key():
    assert dict(KEY_ALIASES) == {"b200-sxm-192gb": "b200-sxm-180gb"}
    assert "b200-sxm-192gb" not in CATALOG
    assert (canonical_key("b200-sxm-192gb"), canonical_key("h100-sxm5-80gb")) == ("b200-sxm-180gb", "h100-sxm5-80gb")
    assert (key_aliases("b200-sxm-180gb"), key_aliases("h100-sxm5-80gb")) == (("b200-sxm-192gb",), ())
    # every alias reads as a catalog entry, never as another alias
    assert all(new in CATALOG and new not in KEY_ALIASES for new in KEY_ALIASES.values())
