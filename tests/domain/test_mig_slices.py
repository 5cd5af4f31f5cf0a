"""Observed MIG allocations: the slices of the instances a job ran on over the GPU's slices."""

from __future__ import annotations

import pytest

from accounting.domain.attribution.mig import mig_gpu_slices, mig_slice_fraction


@pytest.mark.parametrize(
    ("name", "slices"),
    [("NVIDIA H100 80GB HBM3", 7), ("NVIDIA A100-SXM4-80GB", 7), ("NVIDIA H200", 7), ("NVIDIA A30", 4), ("", 7)],
)
def test_gpu_slices_by_model(name, slices):
    assert mig_gpu_slices(device_name=name) == slices


def test_each_instance_counts_once_and_the_fraction_is_capped_at_the_gpu():
    assert mig_slice_fraction(instances=[(1, 3)], device_name="NVIDIA H100 80GB HBM3") == 3 / 7
    assert mig_slice_fraction(instances=[(1, 3), (1, 3), (9, 1)], device_name="NVIDIA H100 80GB HBM3") == 4 / 7
    assert mig_slice_fraction(instances=[(2, 2)], device_name="NVIDIA A30") == 0.5
    assert mig_slice_fraction(instances=[(1, 4), (2, 4)], device_name="NVIDIA A30") == 1.0
