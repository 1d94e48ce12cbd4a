"""The cost model: alpha-beta ring formula, scheme ordering, measured layer profiles."""

import keras
import numpy as np
import pytest

from keras_dlu.distributed.simulate import (LayerProfile, allreduce_seconds, profile_layers,
                                            simulate)

MB = 2**20
ALEXNET_LIKE = [LayerProfile("conv1", 0.14 * MB, 4e-3, 8e-3), LayerProfile("conv2", 1.2 * MB, 6e-3, 12e-3),
                LayerProfile("conv3", 3.5 * MB, 3e-3, 6e-3), LayerProfile("fc6", 150 * MB, 2e-3, 4e-3),
                LayerProfile("fc7", 64 * MB, 1e-3, 2e-3), LayerProfile("fc8", 16 * MB, 5e-4, 1e-3)]


def test_ring_allreduce_cost_follows_the_alpha_beta_formula():
    assert allreduce_seconds(1000, 1, 1e-5, 1e9) == 0.0
    assert allreduce_seconds(1000, 4, 1e-5, 1e9) == pytest.approx(6e-5 + 1.5 * 1000 / 1e9)


def test_overlap_never_loses_to_no_overlap():
    result = simulate(ALEXNET_LIKE, workers=(2, 16), segment_bytes=32 * MB)
    for row in result.values():
        assert row["backprop_overlap_s"] <= row["no_overlap_s"] + 1e-12
        assert row["full_s"] <= row["no_overlap_s"] + 1e-12
        assert row["full_s"] >= row["single_s"] - 1e-12  # cannot beat pure compute
    assert result[16]["gain_full_vs_no_overlap"] > 0.2


def test_without_communication_cost_every_scheme_is_pure_compute():
    result = simulate(ALEXNET_LIKE, workers=(8,), alpha_s=0.0, bandwidth_bytes_per_s=1e30)
    row = result[8]
    for scheme in ("no_overlap", "backprop_overlap", "full"):
        assert row[f"{scheme}_s"] == pytest.approx(row["single_s"])


def test_profile_layers_measures_every_layer_of_a_real_model():
    model = keras.Sequential([keras.Input((32,)), keras.layers.Dense(64), keras.layers.ReLU(),
                              keras.layers.Dense(8)])
    profiles = profile_layers(model, np.ones((16, 32), "float32"), repeats=2)
    assert [p.param_bytes for p in profiles] == [(32 * 64 + 64) * 4, 0, (64 * 8 + 8) * 4]
    assert all(p.forward_s > 0 for p in profiles)


def test_bad_network_parameters_are_rejected():
    with pytest.raises(ValueError, match="bandwidth_bytes_per_s"):
        simulate(ALEXNET_LIKE, bandwidth_bytes_per_s=0)
