"""tutorials/distributed_mnist.py runs under horovodrun -np 2 in quick mode and learns."""

import json

import pytest

from tests.support.horovod import run_horovod


@pytest.mark.multiprocess
def test_distributed_mnist_quick_mode_trains_identically_on_both_ranks(tmp_path):
    result = run_horovod("tutorials/distributed_mnist.py", tmp_path, np=2, args=["--quick"],
                         timeout=180, extra_env={"KERAS_DLU_REPORTS": str(tmp_path)})
    summaries = [json.loads(line.split("SUMMARY ", 1)[1]) for line in result.stdout.splitlines()
                 if "SUMMARY " in line]
    assert sorted(s["rank"] for s in summaries) == [0, 1]
    assert all(s["test_accuracy"] > 0.6 for s in summaries)  # chance is 0.1
    assert summaries[0]["weights_sum"] == pytest.approx(summaries[1]["weights_sum"], abs=1e-4)
    assert summaries[0]["loss"] == pytest.approx(summaries[1]["loss"])  # MetricAverage
    # ... logs the mean of the ranks' own last-epoch losses (they differ: not a sum, not rank 0's)
    local = [s["local_loss"] for s in summaries]
    assert abs(local[0] - local[1]) > 1e-4, local
    for summary in summaries:
        assert summary["loss"][-1] == pytest.approx(sum(local) / 2, rel=1e-6)
    assert (tmp_path / "distributed_mnist.keras").exists()
