"""The share of a MIG GPU that the instances a job ran on make up (observed allocations).

A GPU in MIG mode is cut into compute slices: 7 on A100, H100, H200, B200 and GB200 (profiles
1g to 7g), 4 on A30 (1g, 2g, 4g). An instance's profile names its slices (3g.40gb -> 3), so the
instances a job was seen on hold slices / the GPU's slices of it: two pods on a 3g and a 1g
instance of an H100 hold 3/7 and 1/7 of it, and the idle baseline and held time follow that.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable

MIG_SLICES_DEFAULT = 7
# Models whose MIG geometry is not 7 compute slices, by a pattern of the NVML device name.
_MIG_SLICES_BY_NAME = ((re.compile(r"\bA30\b"), 4),)


def mig_gpu_slices(*, device_name: str) -> int:
    """Compute slices of a MIG-capable GPU, from its NVML name ("NVIDIA A30" -> 4, else 7)."""
    for pattern, slices in _MIG_SLICES_BY_NAME:
        if pattern.search(device_name):
            return slices
    return MIG_SLICES_DEFAULT


def mig_slice_fraction(*, instances: Iterable[tuple[int, int]], device_name: str) -> float:
    """Fraction of the GPU held by these (GPU instance id, slices) instances, each counted once;
    at most 1 (instances reconfigured while seen cannot hold more than the GPU)."""
    held = math.fsum(slices for _, slices in sorted(set(instances)))
    return min(1.0, held / mig_gpu_slices(device_name=device_name))
