"""The cost model: alpha-beta formulas, hand-computed schedules, scheme ordering, profiles."""

import math

import keras
import numpy as np
import pytest

from keras_dlu.distributed.simulate import (SCHEMES, LayerProfile, Network, allreduce_seconds,
                                            best_segments, pipelined_seconds, profile_layers,
                                            simulate, step_seconds)

MB = 2**20
ALEXNET_LIKE = [LayerProfile("conv1", 0.14 * MB, 4e-3, 8e-3), LayerProfile("conv2", 1.2 * MB, 6e-3, 12e-3),
                LayerProfile("conv3", 3.5 * MB, 3e-3, 6e-3), LayerProfile("fc6", 150 * MB, 2e-3, 4e-3),
                LayerProfile("fc7", 64 * MB, 1e-3, 2e-3), LayerProfile("fc8", 16 * MB, 5e-4, 1e-3)]
# No staging copies, 1 s latency, 1 byte/s: hand-computable schedules.
UNIT = Network(alpha_s=1.0, bandwidth_bytes_per_s=1.0, copy_latency_s=0.0, copy_bytes_per_s=1e30)


def test_allreduce_costs_follow_the_alpha_beta_formulas():
    assert allreduce_seconds(1000, 1, 1e-5, 1e9) == 0.0
    assert allreduce_seconds(1000, 4, 1e-5, 1e9) == pytest.approx(6e-5 + 1.5 * 1000 / 1e9)
    assert allreduce_seconds(1000, 5, 1e-5, 1e9, "recursive_doubling") == pytest.approx(
        3 * (1e-5 + 1000 / 1e9))
    with pytest.raises(ValueError, match="algorithm"):
        allreduce_seconds(1000, 4, 1e-5, 1e9, "tree")


def test_pipelined_segments_against_hand_computation():
    net = Network(alpha_s=0.0, bandwidth_bytes_per_s=1.0, copy_latency_s=0.0, copy_bytes_per_s=1.0)
    # p=2: ring network stage of s bytes = s; copies = s each. Whole: 3n; k segments:
    # 3 n/k + (k-1) n/k.
    assert pipelined_seconds(12, 1, 2, net) == pytest.approx(36)
    assert pipelined_seconds(12, 4, 2, net) == pytest.approx(9 + 3 * 3)
    assert best_segments(12, 2, net, limit=16) == 16  # no latency: split as far as allowed
    lat = Network(alpha_s=1.0, bandwidth_bytes_per_s=1.0, copy_latency_s=0.0,
                  copy_bytes_per_s=1.0)
    # p=2, n=16: stages (s, 2 + s, s) with s = 16/k: 3 s + 2 + (k-1)(2 + s).
    times = {k: 3 * 16 / k + 2 + (k - 1) * (2 + 16 / k) for k in range(1, 17)}
    assert best_segments(16, 2, lat, limit=16) == min(times, key=times.get)
    assert pipelined_seconds(16, 4, 2, lat) == pytest.approx(times[4])


def test_step_schedule_against_hand_computation():
    # Two layers, 1 s forward and 1 s backward each; 2 bytes each; p=2 ring: 2 alpha + n = 4 s.
    layers = [LayerProfile("a", 2, 1.0, 1.0), LayerProfile("b", 2, 1.0, 1.0)]
    # no overlap: 4 s compute, then two 4 s messages.
    assert step_seconds(layers, "no_overlap", 2, UNIT) == pytest.approx(12.0)
    # backprop overlap: b's message at t=3..7, a's at 7..11; next step starts at 11.
    assert step_seconds(layers, "backprop_overlap", 2, UNIT) == pytest.approx(11.0)
    # forward priority: same messages, but layer b's forward waits only for b (t=7 -> 11
    # for a, then b's forward 12..13): still 11 s per step here.
    assert step_seconds(layers, "forward_overlap", 2, UNIT) == pytest.approx(11.0)
    # recursive doubling at p=2 costs alpha + n = 3 s instead of 4 s: the size-dependent
    # choice lowers full to 4 (first message from t=3 to 6 ...) -> 3 + 3 + 3 = 9 s per step.
    assert step_seconds(layers, "full", 2, UNIT) == pytest.approx(9.0)


def test_forward_priority_lets_early_layers_start_before_late_reductions_finish():
    # The last layer's large gradient is produced first; layer 0's small one last. With
    # forward priority, layer 0 is updated first and the next forward overlaps the rest.
    # C's message (12 s) starts first; B and A are ready while it runs. First come: C, B,
    # A (A done 27 s after C's start); forward priority: C, A, B, so A's 5 s forward runs
    # while B's message is still on the wire: 5 s less per step.
    layers = [LayerProfile("A", 1, 5.0, 0.5), LayerProfile("B", 10, 1.0, 0.5),
              LayerProfile("C", 10, 1.0, 0.5)]
    fifo = step_seconds(layers, "backprop_overlap", 2, UNIT)
    forward = step_seconds(layers, "forward_overlap", 2, UNIT)
    assert fifo == pytest.approx(34.5)
    assert forward == pytest.approx(fifo - 5.0)


def test_full_is_never_worse_than_any_subset_and_overlap_gains():
    for row in simulate(ALEXNET_LIKE, workers=(2, 16, 64, 256)).values():
        for scheme in SCHEMES[:-1]:
            assert row["full_s"] <= row[f"{scheme}_s"] * (1 + 1e-9), scheme
        assert row["backprop_overlap_s"] <= row["no_overlap_s"] + 1e-12
        assert row["full_s"] >= row["single_s"] - 1e-12  # cannot beat pure compute
    # Largest tensors first (adversarial for priority list scheduling): full still beats
    # no overlap, but may trail first-come-first-served by a fraction of a percent.
    for row in simulate(ALEXNET_LIKE[::-1], workers=(2, 16, 64, 256)).values():
        assert row["full_s"] <= row["no_overlap_s"]
        assert row["full_s"] <= row["backprop_overlap_s"] * 1.01
    assert simulate(ALEXNET_LIKE, workers=(16,))[16]["gain_full_vs_no_overlap"] > 0.2


def test_full_never_loses_to_the_overlap_baselines_on_random_models():
    rng = np.random.default_rng(0)
    for _ in range(40):
        profiles = [LayerProfile(str(i), int(rng.choice([0, 10**rng.uniform(1, 8.3)])),
                                 rng.uniform(1e-5, 2e-2), rng.uniform(1e-5, 4e-2))
                    for i in range(int(rng.integers(1, 8)))]
        for row in simulate(profiles, workers=(2, 64)).values():
            assert row["full_s"] <= min(row["no_overlap_s"], row["backprop_overlap_s"]) * (1 + 1e-9)


def test_fusion_threshold_is_the_latency_bandwidth_crossover():
    many_small = [LayerProfile(str(i), 4096, 1e-5, 1e-5) for i in range(50)]
    row = simulate(many_small, workers=(64,))[64]
    assert row["fusion_threshold_bytes"] == int(64 * 5e-6 * 6.8e9)
    assert row["full_s"] < row["segmented_s"]  # 50 latency-bound messages -> a few fused


def test_without_communication_cost_every_scheme_is_pure_compute():
    result = simulate(ALEXNET_LIKE, workers=(8,), alpha_s=0.0, bandwidth_bytes_per_s=1e30,
                      copy_latency_s=0.0, copy_bytes_per_s=1e30)
    row = result[8]
    for scheme in SCHEMES:
        assert row[f"{scheme}_s"] == pytest.approx(row["single_s"])


def test_compute_scale_may_depend_on_the_worker_count():
    result = simulate(ALEXNET_LIKE, workers=(4, 8), compute_scale=lambda p: 8 / p)
    assert result[4]["single_s"] == pytest.approx(2 * result[8]["single_s"])
    assert math.isfinite(result[8]["gain_full_vs_no_overlap"])


def test_profile_layers_measures_every_layer_of_a_real_model():
    model = keras.Sequential([keras.Input((32,)), keras.layers.Dense(64), keras.layers.ReLU(),
                              keras.layers.Dense(8)])
    profiles = profile_layers(model, np.ones((16, 32), "float32"), repeats=2)
    assert [p.param_bytes for p in profiles] == [(32 * 64 + 64) * 4, 0, (64 * 8 + 8) * 4]
    assert all(p.forward_s > 0 for p in profiles)


def test_bad_network_parameters_are_rejected():
    with pytest.raises(ValueError, match="bandwidth_bytes_per_s"):
        simulate(ALEXNET_LIKE, bandwidth_bytes_per_s=0)
    with pytest.raises(ValueError, match="compute_scale"):
        simulate(ALEXNET_LIKE, compute_scale=lambda p: 0.0)
    with pytest.raises(ValueError, match="scheme"):
        step_seconds(ALEXNET_LIKE, "magic", 8)
