"""The horovodrun launches of ``workers/training_worker.py``, once per session and rank count.

Launches are the slow part of these tests (TensorFlow and Horovod start in every rank, and
every configuration traces its own train function), so one launch per process count serves
every test that reads its results: the training tests and the launcher check.
"""

import pytest

from tests.support.horovod import read_results, run_horovod

WORKER = "tests/distributed/workers/training_worker.py"


def launch(tmp_path_factory, np, args, timeout):
    out = tmp_path_factory.mktemp(f"np{np}")
    run_horovod(WORKER, out, np=np, args=args, timeout=timeout)
    results = read_results(out, np)
    # where the launch's time went (seconds since init() at each section's end), shown with -s
    print(f"\ntraining worker, {np} ranks, rank 0 seconds:", results[0]["seconds"])
    return results


@pytest.fixture(scope="session")
def two_ranks(tmp_path_factory):
    return launch(tmp_path_factory, 2, [], timeout=420)


@pytest.fixture(scope="session")
def three_ranks(tmp_path_factory):
    return launch(tmp_path_factory, 3, ["--quick"], timeout=480)  # 358 s seen at load 10 (before trimming)
