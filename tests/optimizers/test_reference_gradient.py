"""Proxtone's reference-gradient hook: g_B(w_snap) on the same batch, against NumPy."""

import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_dlu.datasets import digits
from keras_dlu.optimizers import Proxtone
from keras_dlu.optimizers._reference_gradient import gradients_at
from tests.support.convex import CLASSES, softmax_regression


def numpy_gradient(w, x, y):
    """Gradient of the mean softmax cross-entropy of ``x @ w`` (float64)."""
    z = x.astype(np.float64) @ w.astype(np.float64)
    p = np.exp(z - z.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    return x.T @ (p - np.eye(CLASSES)[y]) / len(y)


def test_gradients_at_reads_the_given_values_and_changes_nothing():
    x, y = digits()
    model = softmax_regression(Proxtone())
    model.build((None, 64))
    values = [tf.constant(np.random.default_rng(0).normal(size=(64, CLASSES)), tf.float32)]
    before = model.get_weights()[0].copy()
    gradient = gradients_at(model, values, x[:50], y[:50], None)[0]
    np.testing.assert_allclose(gradient.numpy(), numpy_gradient(values[0].numpy(), x[:50],
                                                                y[:50]), rtol=1e-4, atol=1e-6)
    np.testing.assert_array_equal(model.get_weights()[0], before)


def test_fit_gives_same_batch_pairs_and_the_snapshot_gradient_mean():
    """Four steps at batch 32 (no shuffle): the snapshot is w_2 (taken after the first
    step), the pair of step 3 is (w_3 - w_2, g_B3(w_3) - g_B3(w_2)) and the snapshot
    gradient sum is g_B2(w_2) + g_B3(w_2) + g_B4(w_2), all recomputed in NumPy."""
    x, y = digits()
    x, y = x[:128], y[:128]
    optimizer = Proxtone(memory=2, pair_interval=2, snapshot_interval=100, min_pair_cosine=0.0)
    model = softmax_regression(optimizer)
    weights = []
    record = keras.callbacks.LambdaCallback(
        on_train_batch_begin=lambda batch, logs: weights.append(model.get_weights()[0]))
    model.fit(x, y, batch_size=32, epochs=1, verbose=0, shuffle=False, callbacks=[record])
    assert optimizer.variance_reduction_fallback is None
    batches = [slice(32 * k, 32 * (k + 1)) for k in range(4)]
    snapshot = weights[1]
    np.testing.assert_array_equal(optimizer._snapshots[0].numpy(), snapshot)
    expected_sum = sum(numpy_gradient(snapshot, x[b], y[b]) for b in batches[1:])
    np.testing.assert_allclose(optimizer._reference_sums[0].numpy(), expected_sum, rtol=1e-4,
                               atol=1e-6)
    assert float(optimizer._reference_count.numpy()) == 3.0
    assert float(optimizer._pairs_seen.numpy()) == 1.0
    slot = int(np.argmax(optimizer._stamps.numpy()))
    memory = optimizer._memory[0].numpy()
    s = weights[2] - snapshot
    y_pair = (numpy_gradient(weights[2], x[batches[2]], y[batches[2]])
              - numpy_gradient(snapshot, x[batches[2]], y[batches[2]]))
    np.testing.assert_allclose(memory[slot], s, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(memory[slot + 2], y_pair, rtol=1e-3, atol=1e-6)


def test_a_model_with_its_own_train_step_keeps_it_and_says_so():
    class Custom(keras.Sequential):
        def train_step(self, data):
            return super().train_step(data)

    x, y = digits()
    model = Custom([keras.Input((64,)), keras.layers.Dense(CLASSES)])
    model.compile(optimizer=Proxtone(), loss=keras.losses.SparseCategoricalCrossentropy(
        from_logits=True))
    with pytest.warns(UserWarning, match="Custom has its own train_step"):
        model.fit(x[:64], y[:64], batch_size=32, epochs=1, verbose=0)
    assert "own train_step" in model.optimizer.variance_reduction_fallback
    assert "train_step" not in vars(model)


@pytest.mark.parametrize("clipping", ["clipnorm", "clipvalue", "global_clipnorm"])
def test_gradient_clipping_falls_back_to_block_pairs_and_says_so(clipping):
    x, y = digits()
    model = softmax_regression(Proxtone(**{clipping: 1.0}))
    with pytest.warns(UserWarning, match=f"{clipping} is set"):
        model.fit(x[:64], y[:64], batch_size=32, epochs=1, verbose=0)
    assert clipping in model.optimizer.variance_reduction_fallback
    assert "train_step" not in vars(model)


def test_variance_reduction_off_installs_nothing():
    x, y = digits()
    model = softmax_regression(Proxtone(variance_reduction=False))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model.fit(x[:64], y[:64], batch_size=32, epochs=1, verbose=0)
    assert "train_step" not in vars(model)
    assert float(model.optimizer._snapshot_valid.numpy()) == 0.0


def test_non_finite_reference_gradients_never_reach_the_weights_or_the_state():
    x, y = digits()
    model = softmax_regression(Proxtone())
    model.fit(x[:128], y[:128], batch_size=32, epochs=1, verbose=0, shuffle=False)
    optimizer = model.optimizer
    variable = model.trainable_variables[0]
    before = [v.numpy().copy() for v in optimizer.variables]
    value = variable.numpy().copy()
    poisoned = np.ones(variable.shape, np.float32)
    poisoned[3, 2] = np.nan
    optimizer.set_reference_gradients([tf.constant(poisoned)])
    optimizer.apply([tf.ones(variable.shape)], [variable])
    np.testing.assert_array_equal(variable.numpy(), value)
    for old, new in zip(before[1:], optimizer.variables[1:]):  # all but the iteration count
        np.testing.assert_array_equal(old, new.numpy())
