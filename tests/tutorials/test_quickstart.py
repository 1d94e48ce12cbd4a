"""The quickstart runs end to end in its quick mode and learns something real."""

import os
import sys

TUTORIALS = os.path.join(os.path.dirname(__file__), "..", "..", "tutorials")


def test_quickstart_quick_mode_trains_and_plots(tmp_reports):
    sys.path.insert(0, TUTORIALS)
    try:
        import quickstart
    finally:
        sys.path.remove(TUTORIALS)
    rows = quickstart.main(["--quick"])
    assert rows[0]["accuracy"] > 0.6  # one epoch on 1,000 real digits; chance is 0.1
    assert (tmp_reports / "quickstart_training.png").exists()
