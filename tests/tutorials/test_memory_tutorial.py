"""The memory tutorial's quick mode trains real MNIST and reports a lower peak."""

import pytest

from tutorials import memory


@pytest.mark.slow
def test_quickstart_part_quick(tmp_reports):
    row = memory.quickstart_part(quick=True)
    assert row["name"] == "MemoryOptimizer" and row["zeros"] is None
    assert row["accuracy"] > 0.6  # 1 epoch on 1,000 real MNIST digits (chance: 0.1)
    assert row["peak_mb"] > 0 and row["stock_peak_mb"] > 0  # the reduction: benchmarks/memory.py
