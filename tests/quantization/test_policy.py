"""FixedPointPolicy: the exponent rule against a NumPy reference on real values."""

import keras
import numpy as np
import pytest

from keras_dlu.ops import exponent_histogram
from keras_dlu.quantization import FixedPointPolicy
from tests.support.references import exponent_histogram_reference


def overflow_share(x, exponent, bits):
    """Share of non-zero values outside the format's magnitude range 2**(bits-1+e)."""
    x = np.abs(np.asarray(x, np.float64))
    x = x[x > 0]
    return float(np.mean(x >= 2.0 ** (bits - 1 + exponent)))


def smallest_exponent_reference(x, bits, rate):
    """Brute force over exponents, from the values themselves (no histogram)."""
    for exponent in range(-60, 60):
        if overflow_share(x, exponent, bits) <= rate:
            return exponent
    raise AssertionError("no exponent found")


@pytest.mark.parametrize("bits", [8, 16])
def test_required_exponent_matches_brute_force(bits):
    rng = np.random.default_rng(bits)
    for rate in (0.0, 1e-3, 0.05, 0.3):
        for scale in (1e-4, 1.0, 300.0):
            x = (rng.standard_normal(5000) * scale
                 * np.exp(rng.standard_normal(5000))).astype(np.float32)
            policy = FixedPointPolicy(bits=bits, overflow_rate=rate)
            chosen = int(policy.required_exponent(exponent_histogram_reference(x)))
            assert chosen == smallest_exponent_reference(x, bits, rate), (rate, scale)
            # The native analysis block gives the same answer.
            assert int(policy.required_exponent(exponent_histogram(x))) == chosen


def test_growing_distribution_gets_larger_exponent_before_it_overflows():
    rng = np.random.default_rng(1)
    base = rng.standard_normal(4000).astype(np.float32) * 0.01
    bits, rate = 8, 1e-3
    predicting = FixedPointPolicy(bits=bits, overflow_rate=rate, history=3)
    lagging = FixedPointPolicy(bits=bits, overflow_rate=rate, history=3, predict_growth=False)
    for policy, must_hold in ((predicting, True), (lagging, False)):
        stored = np.zeros((3, 64), np.int64)
        exponent = smallest_exponent_reference(base, bits, rate)
        shares = []
        for step in range(12):
            x = base * 1.7 ** step  # grows every step
            shares.append(overflow_share(x, exponent, bits))  # exponent chosen beforehand
            stored = np.concatenate([stored[1:], exponent_histogram_reference(x)[None]])
            new = int(policy.next_exponent(stored, exponent))
            assert new >= exponent  # never shrinks while growing
            exponent = new
        # Once the history has seen the growth (3 steps), the exponent stays ahead of it.
        if must_hold:
            assert max(shares[3:]) <= rate, shares
        else:  # without prediction it reacts only after the overflow
            assert max(shares[3:]) > rate, shares


def test_history_keeps_range_then_shrinks():
    policy = FixedPointPolicy(bits=8, overflow_rate=0.0, history=3, predict_growth=False)
    big = exponent_histogram_reference(np.full(10, 100.0))   # needs e = 0 (100 < 128)
    small = exponent_histogram_reference(np.full(10, 1.0))   # needs e = -6 (1 < 2**-6 * 128)
    stored = np.stack([np.zeros(64, np.int64), np.zeros(64, np.int64), big])
    exponents = []
    for _ in range(4):
        stored = np.concatenate([stored[1:], small[None]])
        exponents.append(int(policy.next_exponent(stored, 5)))
    assert exponents == [0, 0, -6, -6]


def test_empty_statistics_keep_current_exponent():
    policy = FixedPointPolicy()
    assert int(policy.next_exponent(np.zeros((4, 64), np.int64), -9)) == -9


def test_update_stores_histogram_in_layer_state():
    policy = FixedPointPolicy(bits=16, overflow_rate=0.0, history=2)
    layer = keras.layers.Layer()
    state = policy.create_state(layer, "inputs", initial_exponent=3)
    assert int(state.exponent.numpy()) == 3 and not layer.trainable_weights
    values = np.array([0.5, -3.0, 1000.0], np.float32)
    policy.update(state, exponent_histogram(values))
    np.testing.assert_array_equal(state.histograms.numpy()[-1], exponent_histogram_reference(values))
    assert int(state.updates.numpy()) == 1
    assert int(state.exponent.numpy()) == smallest_exponent_reference(values, 16, 0.0)


@pytest.mark.parametrize("argument, value", [
    ("bits", 4), ("bits", 32), ("bits", True), ("bits", "8"),
    ("overflow_rate", 1.0), ("overflow_rate", -0.1), ("overflow_rate", "0.1"),
    ("history", 0), ("history", 2.5), ("headroom", -1), ("predict_growth", 1),
])
def test_bad_arguments_name_the_argument(argument, value):
    with pytest.raises(ValueError, match=f"`{argument}`"):
        FixedPointPolicy(**{argument: value})


def test_config_round_trip_and_serialization():
    policy = FixedPointPolicy(bits=16, overflow_rate=0.01, history=7, headroom=1,
                              predict_growth=False)
    assert FixedPointPolicy.from_config(policy.get_config()) == policy
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(policy))
    assert isinstance(restored, FixedPointPolicy) and restored == policy
    assert restored != FixedPointPolicy()
