"""Faults and bad input: dead peer, use before init(), invalid sizes."""

import re
import time

import keras
import numpy as np
import pytest

import keras_dlu.distributed as dist
from tests.support.horovod import run_horovod


@pytest.mark.multiprocess
def test_killed_rank_makes_the_job_fail_with_a_message_within_60_s(tmp_path):
    result = run_horovod("tests/distributed/workers/killed_rank_worker.py", tmp_path, np=2,
                         timeout=150, check=False)
    finished = time.time()
    assert result.returncode != 0
    killed_at = float((tmp_path / "killed_at").read_text())
    assert finished - killed_at < 60
    assert re.search(r"non-zero status|HorovodInternalError|Connection closed|peer",
                     result.stdout), result.stdout[-3000:]
    assert "training finished although a peer was killed" not in result.stdout


def test_optimizer_used_before_init_raises_a_clear_error(horovod):
    if horovod.is_initialized():
        pytest.skip("Horovod was initialized in this process by another test")
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.compile(optimizer=dist.DistributedOptimizer(keras.optimizers.SGD()), loss="mse")
    with pytest.raises(dist.NotInitializedError, match=r"keras_dlu.distributed.init\(\)"):
        model.fit(np.zeros((2, 3)), np.zeros((2, 1)), verbose=0)
    with pytest.raises(dist.NotInitializedError):
        dist.rank()


@pytest.mark.parametrize("argument", ["fusion_threshold_bytes", "first_bucket_bytes",
                                      "last_bucket_bytes", "chain_segment_bytes",
                                      "large_tensor_bytes", "segment_bytes"])
@pytest.mark.parametrize("value", [0, -1, float("nan"), "1MB"])
def test_non_positive_byte_sizes_are_rejected(argument, value):
    with pytest.raises(ValueError, match=argument):
        dist.DistributedOptimizer(keras.optimizers.SGD(), **{argument: value})


@pytest.mark.parametrize("kwargs, argument", [
    ({"large_tensor_strategy": "ring"}, "large_tensor_strategy"),
    ({"priority": "backward"}, "priority"),
    ({"compression": "int4"}, "compression"),
    ({"backward_passes_per_step": 0}, "backward_passes_per_step"),
    ({"learning_rate": 0.1}, "learning_rate"),
])
def test_other_bad_arguments_name_the_argument(kwargs, argument):
    with pytest.raises(ValueError, match=argument):
        dist.DistributedOptimizer(keras.optimizers.SGD(), **kwargs)


def test_wrapping_twice_or_wrapping_a_non_optimizer_is_rejected():
    with pytest.raises(ValueError, match="optimizer"):
        dist.DistributedOptimizer(dist.DistributedOptimizer(keras.optimizers.SGD()))
    with pytest.raises(ValueError, match="optimizer"):
        dist.DistributedOptimizer(object())
