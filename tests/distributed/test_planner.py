"""The bucket planner: order, fusion limits, segmentation, deterministic names."""

import pytest

from keras_dlu.distributed import plan_buckets


def covered(buckets):
    """{variable index: sorted list of (start, stop)} over all buckets."""
    pieces = {}
    for bucket in buckets:
        for segment in bucket.segments:
            pieces.setdefault(segment.index, []).append((segment.start, segment.stop))
    return {k: sorted(v) for k, v in pieces.items()}


def test_reverse_order_fusion_and_first_bucket_cap():
    sizes = [10, 20, 30, 40, 50]  # float32: 40..200 bytes
    buckets = plan_buckets(sizes, [4] * 5, fusion_threshold_bytes=300, first_bucket_bytes=200,
                           large_tensor_bytes=10**6, segment_bytes=100)
    assert [b.variable_indices for b in buckets] == [[4], [2, 3], [0, 1]]
    assert all(b.kind == "fused" for b in buckets)
    assert buckets[0].nbytes <= 200 and all(b.nbytes <= 300 for b in buckets)
    assert [s.index for s in buckets[1].segments] == [3, 2]  # reverse layer order


def test_every_element_is_reduced_exactly_once():
    sizes = [7, 1000, 3, 250, 64]
    buckets = plan_buckets(sizes, [4] * 5, fusion_threshold_bytes=64, first_bucket_bytes=16,
                           large_tensor_bytes=1000, segment_bytes=396)
    pieces = covered(buckets)
    for index, size in enumerate(sizes):
        spans = pieces[index]
        assert spans[0][0] == 0 and spans[-1][1] == size
        assert all(a[1] == b[0] for a, b in zip(spans, spans[1:]))


@pytest.mark.parametrize("strategy", ["reduce_scatter", "allreduce"])
def test_large_tensors_are_segmented_with_the_chosen_strategy(strategy):
    buckets = plan_buckets([100, 1000], [4, 4], large_tensor_bytes=1000, segment_bytes=1200,
                           large_tensor_strategy=strategy)
    large = [b for b in buckets if 1 in b.variable_indices]
    assert [b.kind for b in large] == [strategy] * 4  # 1000 elements / 300 per segment
    assert [b.nbytes for b in large] == [1200, 1200, 1200, 400]
    assert buckets[-1].kind == "fused" and buckets[-1].variable_indices == [0]


def test_names_depend_only_on_positions_and_are_unique():
    a = plan_buckets([5, 500, 6], [4, 4, 4], large_tensor_bytes=1000, segment_bytes=400)
    b = plan_buckets([5, 500, 6], [4, 4, 4], large_tensor_bytes=1000, segment_bytes=400)
    assert [x.name() for x in a] == [x.name() for x in b]
    assert len({x.name() for x in a}) == len(a)


def test_zero_sized_tensors_are_skipped_and_empty_input_plans_nothing():
    assert plan_buckets([], []) == []
    assert covered(plan_buckets([0, 4], [4, 4])) == {1: [(0, 4)]}


def test_last_bucket_cap_sends_the_first_layers_alone_and_the_layers_above_earlier():
    sizes = [10, 20, 30, 40, 50]  # float32: 40..200 bytes, all fit in one 10**4-byte bucket
    plan = dict(fusion_threshold_bytes=10**4, first_bucket_bytes=10**4, large_tensor_bytes=10**6)
    assert [b.variable_indices for b in plan_buckets(sizes, [4] * 5, **plan)] == [[0, 1, 2, 3, 4]]
    capped = plan_buckets(sizes, [4] * 5, last_bucket_bytes=120, **plan)
    assert [b.variable_indices for b in capped] == [[2, 3, 4], [0, 1]]  # 40 + 80 bytes last
    assert capped[-1].nbytes <= 120
    # the cap never splits a tensor: a first tensor above it leaves the plan unchanged
    assert [b.variable_indices for b in plan_buckets(sizes, [4] * 5, last_bucket_bytes=39,
                                                     **plan)] == [[0, 1, 2, 3, 4]]
    # a large (segmented) tensor ends the tail: nothing below it is fused with layers above
    mixed = plan_buckets([10, 2000, 10], [4] * 3, last_bucket_bytes=10**4,
                         large_tensor_bytes=4000, segment_bytes=8000)
    assert [b.variable_indices for b in mixed] == [[2], [1], [0]]


def test_tensors_of_the_fusion_threshold_travel_as_chained_segments():
    sizes = [10, 300, 10]  # float32: 40, 1200, 40 bytes
    plan = dict(fusion_threshold_bytes=1000, first_bucket_bytes=1000, large_tensor_bytes=10**6)
    assert [b.kind for b in plan_buckets(sizes, [4] * 3, **plan)] == ["fused"] * 3
    chained = plan_buckets(sizes, [4] * 3, chain_segment_bytes=500, **plan)
    assert [(b.kind, b.variable_indices) for b in chained] == [
        ("fused", [2]), ("chained", [1]), ("chained", [1]), ("chained", [1]), ("fused", [0])]
    assert [b.nbytes for b in chained[1:4]] == [500, 500, 200]  # 125 elements per segment
    assert covered(chained)[1] == [(0, 125), (125, 250), (250, 300)]
    assert len({b.name() for b in chained}) == len(chained)
    # below the fusion threshold, or not above the segment size: fused as before
    assert [b.kind for b in plan_buckets(sizes, [4] * 3, chain_segment_bytes=1200, **plan)
            ] == ["fused"] * 3
    assert [b.kind for b in plan_buckets([10, 200, 10], [4] * 3, chain_segment_bytes=500, **plan)
            ] == ["fused"]  # 880 bytes, one bucket
    # a large tensor is still segmented by its own strategy
    large = plan_buckets([3000], [4], chain_segment_bytes=500, large_tensor_bytes=10**4,
                         segment_bytes=4000, large_tensor_strategy="allreduce")
    assert [b.kind for b in large] == ["allreduce"] * 3


@pytest.mark.parametrize("argument", ["fusion_threshold_bytes", "first_bucket_bytes",
                                      "large_tensor_bytes", "segment_bytes", "last_bucket_bytes",
                                      "chain_segment_bytes"])
def test_planner_rejects_non_positive_sizes(argument):
    with pytest.raises(ValueError, match=argument):
        plan_buckets([4], [4], **{argument: 0})
    with pytest.raises(ValueError, match="large_tensor_strategy"):
        plan_buckets([4], [4], large_tensor_strategy="tree")


def test_auto_strategy_is_allreduce_at_two_ranks_and_reduce_scatter_above():
    from keras_dlu.distributed.planner import resolve_strategy

    assert [resolve_strategy("auto", n) for n in (1, 2, 3, 64)] == [
        "allreduce", "allreduce", "reduce_scatter", "reduce_scatter"]
    assert resolve_strategy("reduce_scatter", 2) == "reduce_scatter"
    assert resolve_strategy("allreduce", 64) == "allreduce"
    with pytest.raises(ValueError, match="ranks"):
        resolve_strategy("auto", 0)
    with pytest.raises(ValueError, match="large_tensor_strategy"):
        resolve_strategy("tree", 2)
    with pytest.raises(ValueError, match="large_tensor_strategy"):
        plan_buckets([4], [4], large_tensor_strategy="auto")  # resolved before planning


def test_default_plan_of_the_benchmark_models_leaves_while_back_propagation_continues():
    # MLP 784-1024-1024-10 (7.4 MB of float32 gradients): the capped first bucket, then 4 MiB
    # buckets, so the last layers' gradients leave before the first layer's exist; nothing
    # is segmented at the planner's defaults (large tensors start at 64 MiB, no chains).
    sizes = [784 * 1024, 1024, 1024 * 1024, 1024, 1024 * 10, 10]
    buckets = plan_buckets(sizes, [4] * 6)
    assert [b.kind for b in buckets] == ["fused", "fused", "fused"]
    assert [b.variable_indices for b in buckets] == [[3, 4, 5], [2], [0, 1]]
    import tensorflow as tf

    from keras_dlu.distributed import DistributedOptimizer

    # with chain_segment_bytes=1 MiB the 4 MiB second kernel travels in 4 chained segments
    _, buckets = DistributedOptimizer("sgd", chain_segment_bytes=2**20).plan(
        [tf.zeros([n]) for n in sizes])
    assert [(b.kind, b.variable_indices) for b in buckets] == [
        ("fused", [3, 4, 5])] + [("chained", [2])] * 4 + [("fused", [0, 1])]
    # The benchmark's VGG-style CNN: the dense 2048x512 kernel (4 MiB) travels apart from
    # the convolutions, which back-propagation produces after it.
    cnn = [3 * 3 * 3 * 32, 32, 9 * 32 * 32, 32, 9 * 32 * 64, 64, 9 * 64 * 64, 64,
           9 * 64 * 128, 128, 9 * 128 * 128, 128, 2048 * 512, 512, 512 * 10, 10]
    groups = [b.variable_indices for b in plan_buckets(cnn, [4] * 16)]
    assert groups == [[13, 14, 15], [12], list(range(12))]
    # DistributedOptimizer's default plan caps the last bucket at 256 KiB: convolutions 1-4
    # (the next forward pass needs them first) alone, 5-6 sent while 1-4 differentiate
    _, buckets = DistributedOptimizer("sgd").plan([tf.zeros([n]) for n in cnn])
    assert [b.variable_indices for b in buckets] == [[13, 14, 15], [12], list(range(7, 12)),
                                                     list(range(7))]
    # chained (chain_segment_bytes=1 MiB): the dense kernel (4 MiB, the fusion threshold) as
    # 4 segments, each launched after the previous one arrived
    _, buckets = DistributedOptimizer("sgd", chain_segment_bytes=2**20).plan(
        [tf.zeros([n]) for n in cnn])
    assert [b.variable_indices for b in buckets] == [[13, 14, 15]] + [[12]] * 4 + [
        list(range(7, 12)), list(range(7))]
    assert [b.kind for b in buckets[1:5]] == ["chained"] * 4
    assert buckets[-1].nbytes <= 2**18
    large = plan_buckets([40 * 2**20], [4])  # 160 MiB: 16 MiB segments
    assert len(large) == 10 and all(b.nbytes == 16 * 2**20 for b in large)
