"""The Proxtone tutorial's quick mode: real MNIST training, a sparse model, the table row."""

import importlib.util
import math
import pathlib

import pytest

PATH = pathlib.Path(__file__).resolve().parents[2] / "tutorials" / "optimizers.py"


@pytest.mark.slow
def test_quick_mode_trains_a_sparse_mlp_and_returns_the_row():
    spec = importlib.util.spec_from_file_location("optimizers_tutorial", PATH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    row = module.quickstart_part(True)
    assert set(row) == {"name", "accuracy", "seconds", "peak_mb", "zeros"}
    assert row["name"] == f"Proxtone (l1={module.L1:g})" and row["peak_mb"] is None
    assert row["accuracy"] > 0.5  # chance is 0.1
    assert 0.0 < row["zeros"] < 1.0  # L1 made some weights exactly zero, not all
    assert math.isfinite(row["seconds"]) and row["seconds"] > 0
