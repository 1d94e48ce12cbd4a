"""The quickstart runs every capability end to end in its quick mode and learns something real."""

import os
import sys

import pytest

TUTORIALS = os.path.join(os.path.dirname(__file__), "..", "..", "tutorials")


@pytest.mark.slow
def test_quickstart_quick_mode_trains_every_variant_and_reports(tmp_reports, native_ops):
    sys.path.insert(0, TUTORIALS)
    try:
        import quickstart
    finally:
        sys.path.remove(TUTORIALS)
    rows = quickstart.main(["--quick"])
    mnist_rows, gru_row = rows[:-1], rows[-1]
    assert [r["name"] for r in mnist_rows] == [v.name for v in quickstart.VARIANTS]
    for row in mnist_rows:
        # one epoch on 1,000 real digits; chance is 0.1
        assert row["accuracy"] > 0.3, row["name"]
        assert row["peak_mb"] > 0 and 0 <= row["zeros"] <= 1
    by_name = {row["name"]: row for row in mnist_rows}
    stock = by_name["stock Keras (Adam)"]
    assert stock["accuracy"] > 0.6
    # MemoryOptimizer reorders the backward pass but trains to stock's weights.
    assert by_name["MemoryOptimizer (Adam)"]["accuracy"] == pytest.approx(stock["accuracy"])
    proxtone = next(row for name, row in by_name.items() if name.startswith("Proxtone"))
    assert proxtone["zeros"] > 0.01  # the L1 proximal step makes weights exactly zero
    assert gru_row["val_perplexity_stable_gru"] > 1
    report = (tmp_reports / "quickstart.md").read_text()
    assert "| stock Keras (Adam)" in report and "StableGRU" in report
    for name in ("quickstart_training.png", "quickstart_summary.png"):
        assert (tmp_reports / name).exists()
