"""horovodrun from .venv really starts several processes that can allreduce.

Checked inside the two-rank training launch (conftest.py), its first collective: a launch
of its own cost as much again as the check.
"""

import pytest


@pytest.mark.multiprocess
def test_two_ranks_allreduce_to_the_mean(two_ranks):
    for result in two_ranks:
        assert result["size"] == 2
        assert result["launcher_mean"] == [1.5] * 3  # ranks contribute 1 and 2
