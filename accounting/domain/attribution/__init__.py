"""Attribution of measured energy to accounts: every joule lands on exactly one job or the fleet.

Pure: stdlib only, time is always an argument. The policies (DESIGN.md §3) are declared where
they are applied; the invariant the tests hold is conservation:

    Σ shares.energy_j == Σ gpu energy_j + Σ (cpu + dram) + Σ max(0, wall − measured)

Sums are taken with ``math.fsum`` (exactly rounded, so independent of summation order), which
makes the output bit-identical for any ordering of the inputs.

The package, along the seams of the former single module:

* ``core``: ``attribute()`` itself: checks the input, attributes GPU windows, then host
  windows, and returns the shares and diagnostics in a fixed order;
* ``rules``: the readable statement of the rules (the policy): a window cut at hour boundaries
  and allocation edges, the holders' shares of idle and active energy, host energy by GPU
  slots, the wall-energy balance, and the time helpers;
* ``fast``: the fast path for single-piece windows, which computes each contribution by the
  same expression as ``rules`` (tests/domain/test_attribution_fastpath.py proves it equal);
* ``columnar``: ``attribute_columns()``, the same over a device's windows as columns (the
  columnar raw store's form, what the worker reads): runs of single-piece windows are attributed
  a run at a time, the rest handed to ``fast``/``rules`` (tests/domain/test_attribution_columnar.py
  proves it equal to ``attribute()``, bit for bit);
* ``ledger``: the accumulation of contributions per share key, summed exactly rounded;
* ``checks``: validation of the input (the first error raised is always the same).
"""

from accounting.domain.attribution.columnar import GpuColumns, attribute_columns
from accounting.domain.attribution.core import Attribution, attribute

__all__ = ["Attribution", "GpuColumns", "attribute", "attribute_columns"]
