"""DistributedOptimizer under real horovodrun against single-process training.

One launch per process count runs every configuration (workers/training_worker.py; the
``two_ranks`` and ``three_ranks`` fixtures are in conftest.py). The reference is plain Keras
training in one process on the concatenated batch from root's initial weights; the
tolerance is 1e-5.
"""

import numpy as np
import pytest

TOLERANCE = 1e-5


def check_matches_reference(results):
    names = results[0]["configs"].keys()
    assert names, "the worker trained no configuration"
    for name in names:
        weights = [np.array(r["configs"][name]["weights"]) for r in results]
        for rank, result in enumerate(results):
            assert result["configs"][name]["diff_to_reference"] < TOLERANCE, (name, rank)
            np.testing.assert_allclose(weights[rank], weights[0], rtol=0, atol=TOLERANCE)
    # The check can fail: ranks start differently, and without averaging they end differently.
    assert results[1]["initial_diff_from_root"] > 0.01
    assert results[0]["initial_diff_from_root"] == 0.0
    unaveraged = [np.array(r["unaveraged_weights"]) for r in results]
    assert np.max(np.abs(unaveraged[1] - unaveraged[0])) > 1e-3


@pytest.mark.multiprocess
def test_two_ranks_match_single_process_training_for_every_optimizer_and_plan(two_ranks):
    assert {"sgd", "adam", "sdprop"} == set(two_ranks[0]["optimizers"])
    configs = two_ranks[0]["configs"]
    assert {"sgd/default", "adam/forward_overlap", "sdprop/forward_overlap_last_bucket",
            "adam/forward_overlap_chained"} <= set(configs)
    # the capped last bucket did split the plan: first layer alone, launched last
    assert configs["sgd/forward_overlap_last_bucket"]["buckets"] == [[2, 3, 4, 5], [0, 1]]
    assert configs["sgd/default"]["buckets"] == [[0, 1, 2, 3, 4, 5]]
    # the chained plan did chain: the 24x16 kernel in 4 segments, the 16x8 one in 2
    assert configs["sgd/forward_overlap_chained"]["kinds"] == [
        "fused", "fused"] + ["chained"] * 4 + ["fused"] + ["chained"] * 2
    assert configs["sgd/forward_overlap_chained"]["buckets"] == [[5], [3, 4]] + [[2]] * 4 + [
        [1]] + [[0]] * 2
    for optimizer in two_ranks[0]["optimizers"]:
        # every optimizer under some ForwardOverlap plan (several steps per graph)
        assert any(k.startswith(optimizer + "/forward_overlap") for k in configs), optimizer
    # every plan with some optimizer
    assert {k.split("/")[1] for k in configs} == {
        "default", "forward_overlap", "forward_overlap_last_bucket", "forward_overlap_chained",
        "fused_and_reduce_scatter", "segmented_allreduce"}
    check_matches_reference(two_ranks)


@pytest.mark.multiprocess
def test_three_ranks_match_single_process_training(three_ranks):
    assert all(r["size"] == 3 for r in three_ranks)
    # the cases where the rank count changes the work: reduce-scatter pads 3 ranks' shards,
    # a chain under ForwardOverlap, the default plan; the three optimizers
    assert {"sgd/default", "adam/forward_overlap_chained",
            "sdprop/fused_and_reduce_scatter"} <= set(three_ranks[0]["configs"])
    assert "reduce_scatter" in three_ranks[0]["configs"]["sdprop/fused_and_reduce_scatter"][
        "kinds"]
    check_matches_reference(three_ranks)


@pytest.mark.multiprocess
def test_accumulation_and_loss_scaling_match_the_reference(two_ranks):
    for result in two_ranks:
        assert result["accumulation_diff"] < TOLERANCE
        assert result["loss_scale_diff"] < TOLERANCE


@pytest.mark.multiprocess
def test_metric_average_logs_the_mean_of_the_ranks_losses_on_every_rank(two_ranks):
    assert two_ranks[0]["averaged_loss"] == pytest.approx(two_ranks[1]["averaged_loss"], rel=1e-6)
    local = [r["local_loss"] for r in two_ranks]
    # the ranks' own losses differ, so a sum or rank 0's value would not be their mean
    assert abs(local[0] - local[1]) > 1e-3 * max(local), local
    for result in two_ranks:
        assert result["averaged_loss"] == pytest.approx(np.mean(local), rel=1e-6)


@pytest.mark.multiprocess
def test_checkpoint_from_rank0_restores_and_continues_identically(two_ranks):
    for result in two_ranks:
        assert result["restored_optimizer"] == "DistributedOptimizer"
        assert result["checkpoint_diff"] < TOLERANCE
        assert result["checkpoint_reference_diff"] < TOLERANCE


@pytest.mark.multiprocess
def test_mismatched_models_raise_an_error_naming_the_variable(two_ranks):
    for result in two_ranks:
        for key in ("mismatch_error", "mismatch_error_overlap"):
            message = result[key]
            assert message is not None, f"a mismatched model trained without error ({key})"
            assert "/kernel' has shape (8, 1" in message and "rank" in message


@pytest.mark.multiprocess
@pytest.mark.parametrize("ranks", ["two_ranks", "three_ranks"])
def test_fp16_wire_matches_single_process_training_within_float16_rounding(ranks, request):
    """2 ranks: float16 all-gathered, averaged in float32; 3 ranks: float16 allreduce."""
    results = request.getfixturevalue(ranks)
    for result in results:
        # above float32 rounding (so float16 did travel: float32 ends ~3e-8 away), far below
        # the error of a wrong average (a sum instead of a mean doubles every update)
        assert 1e-6 < result["fp16_diff"] < 1e-3, result["fp16_diff"]
        np.testing.assert_array_equal(result["fp16_weights"], results[0]["fp16_weights"])
