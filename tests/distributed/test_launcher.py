"""horovodrun from .venv really starts several processes that can allreduce."""

import pytest

from tests.support.horovod import read_results, run_horovod


@pytest.mark.multiprocess
@pytest.mark.parametrize("np_", [2])
def test_two_ranks_allreduce_to_the_mean(tmp_path, np_):
    run_horovod("tests/distributed/workers/allreduce_worker.py", tmp_path, np=np_, timeout=180)
    results = read_results(tmp_path, np_)
    expected = sum(range(1, np_ + 1)) / np_
    for result in results:
        assert result["size"] == np_
        assert result["mean"] == [expected] * 3
