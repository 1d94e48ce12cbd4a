"""DLUDense against a NumPy integer reference and stock Keras Dense."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_dlu.layers import DLUDense
from keras_dlu.quantization import FixedPointPolicy
from tests.support.dlu_layers import (exponent_histogram_reference,
                                       fixed_point_product,
                                       required_exponent_reference, rounding_bound)

pytestmark = pytest.mark.usefixtures("native_ops")
EXACT = FixedPointPolicy(bits=16, overflow_rate=0.0)


def dense_pair(bits, units=7, features=13, **kwargs):
    layer = DLUDense(units, policy=FixedPointPolicy(bits=bits, overflow_rate=0.0), **kwargs)
    layer.build((None, features))
    reference = keras.layers.Dense(units, **kwargs)
    reference.build((None, features))
    reference.set_weights([layer.kernel.numpy(), layer.bias.numpy()])
    return layer, reference


@pytest.mark.parametrize("bits", [8, 16])
@pytest.mark.parametrize("batch", [1, 5, 33])
def test_forward_equals_integer_reference_and_approximates_dense(bits, batch):
    layer, reference = dense_pair(bits)
    x = np.random.default_rng(batch).standard_normal((batch, 13)).astype(np.float32) * 3
    kernel = layer.kernel.numpy()
    ex, ek = required_exponent_reference(x, bits), required_exponent_reference(kernel, bits)
    expected = fixed_point_product(x, kernel, ex, ek, bits) + layer.bias.numpy()
    got = layer(x).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-6 * np.abs(expected).max())
    error = np.abs(got - reference(x).numpy())
    assert np.all(error <= rounding_bound(x, kernel, ex, ek) * (1 + 1e-5) + 1e-7)
    if bits == 8:
        assert error.max() > 0  # 8 bits really are coarser than float32


def test_backward_products_in_fixed_point_and_statistics_stored():
    bits = 8
    layer, reference = dense_pair(bits, activation=None)
    rng = np.random.default_rng(3)
    x = tf.constant(rng.standard_normal((9, 13)).astype(np.float32))
    dy = rng.standard_normal((9, 7)).astype(np.float32) * 1e-3
    kernel = layer.kernel.numpy()
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        y = layer(x, training=True)
        loss = tf.reduce_sum(y * dy)
        loss_ref = tf.reduce_sum(reference(x) * dy)
    dx, dkernel = tape.gradient(loss, [x, layer.kernel])
    dx_ref, dkernel_ref = tape.gradient(loss_ref, [x, reference.kernel])
    ex, ek, eg = (required_exponent_reference(v, bits) for v in (x, kernel, dy))
    np.testing.assert_allclose(dx, fixed_point_product(dy, kernel.T, eg, ek, bits),
                               rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(dkernel, fixed_point_product(x.numpy().T, dy, ex, eg, bits),
                               rtol=1e-6, atol=1e-9)
    assert np.all(np.abs(dx - dx_ref) <= rounding_bound(dy, kernel.T, eg, ek) + 1e-9)
    assert np.abs(dkernel - dkernel_ref).max() > 0
    states = layer.fixed_point_states
    for name, values in (("inputs", x), ("kernel", kernel), ("gradients", dy)):
        np.testing.assert_array_equal(states[name].histograms.numpy()[-1],
                                      exponent_histogram_reference(values))
        assert int(states[name].updates.numpy()) == 1
        assert int(states[name].exponent.numpy()) == required_exponent_reference(
            values, bits, layer.policy.overflow_rate)


def test_inference_does_not_change_state_and_nan_is_not_hidden():
    layer, _ = dense_pair(8)
    x = np.ones((3, 13), np.float32)
    x[1, 4] = np.nan
    y = layer(x).numpy()
    assert np.isnan(y[1]).all() and np.isfinite(y[[0, 2]]).all()
    assert all(int(s.updates.numpy()) == 0 for s in layer.fixed_point_states.values())


def test_fit_trains_in_keras_and_leading_dimensions():
    keras.utils.set_random_seed(1)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((256, 4, 6)).astype(np.float32)
    y = (x.sum(axis=-1, keepdims=True) > 0).astype(np.float32)
    model = keras.Sequential([keras.Input((4, 6)), DLUDense(8, activation="relu", bits=8),
                              DLUDense(1, activation="sigmoid", bits=8)])
    model.compile(optimizer=keras.optimizers.Adam(0.02), loss="binary_crossentropy",
                  metrics=["accuracy"])
    history = model.fit(x, y, batch_size=32, epochs=6, verbose=0)
    assert history.history["accuracy"][-1] > 0.9
    assert int(model.layers[0].fixed_point_states["gradients"].updates.numpy()) == 48


@pytest.mark.parametrize("kwargs, argument", [
    ({"bits": 4}, "bits"), ({"rounding": "up"}, "rounding"), ({"policy": "fast"}, "policy"),
    ({"bits": 16, "policy": FixedPointPolicy(bits=8)}, "bits"), ({"seed": 1.5}, "seed"),
    ({"lora_rank": 2}, "lora_rank"),
])
def test_bad_arguments(kwargs, argument):
    with pytest.raises(ValueError, match=f"`{argument}`"):
        DLUDense(4, **kwargs)


def test_config_and_save_load_with_state(tmp_path):
    layer = DLUDense(5, bits=16, rounding="stochastic", seed=3, activation="relu",
                     policy=FixedPointPolicy(bits=16, history=2, overflow_rate=0.01))
    model = keras.Sequential([keras.Input((6,)), layer])
    x = np.random.default_rng(0).standard_normal((16, 6)).astype(np.float32)
    model.compile(optimizer="sgd", loss="mse")
    model.fit(x, x[:, :5], epochs=1, batch_size=8, verbose=0)
    clone = DLUDense.from_config(layer.get_config())
    assert clone.policy == layer.policy and clone.rounding == "stochastic" and clone.seed == 3
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    for original, restored in zip(model.layers[0].weights, loaded.layers[0].weights):
        np.testing.assert_array_equal(original.numpy(), restored.numpy())
    np.testing.assert_array_equal(model.predict(x, verbose=0), loaded.predict(x, verbose=0))


@pytest.mark.parametrize("bits,forward,backward", [
    (8, "KerasDluMatmulFused", "KerasDluMatmulFusedGrad"),
    (16, "KerasDluMatmul", "KerasDluMatmul")])
def test_8_bit_training_keeps_digits_for_the_backward(bits, forward, backward):
    """At 8 bits the training graph's product keeps the operands' digits and its gradient
    reads them (KerasDluMatmulFusedGrad); 16 bits re-quantize (no kept digits)."""
    layer = DLUDense(5, bits=bits)
    x = tf.constant(np.random.default_rng(0).standard_normal((4, 6)), tf.float32)
    layer.build(x.shape)

    @tf.function
    def step(x):
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(layer(x, training=True))
        return tape.gradient(loss, layer.kernel)

    ops = step.get_concrete_function(x).graph.get_operations()
    types = [op.type for op in ops]
    assert forward in types and backward in types
    fused = {"KerasDluMatmulFused", "KerasDluMatmulFusedGrad"}
    assert (fused <= set(types)) == (bits == 8)
    assert ("KerasDluMatmul" in types) == (bits == 16)


def test_relu_gradient_equals_stock_relu_without_keeping_the_float_activation():
    layer = DLUDense(6, bits=8, activation="relu")
    plain = DLUDense(6, bits=8)  # followed by stock tf.nn.relu (ReluGrad)
    x = np.random.default_rng(5).standard_normal((9, 4)).astype(np.float32)
    x[3, 1] = np.nan  # a NaN row: relu(NaN) is NaN, both gradients give 0 there
    for model in (layer, plain):
        model.build(x.shape)
    plain.set_weights(layer.get_weights())
    dy = np.random.default_rng(6).standard_normal((9, 6)).astype(np.float32)

    def gradients(model, activation, x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = tf.reduce_sum(activation(model(x, training=True)) * dy)
        return tape.gradient(loss, [x, model.kernel, model.bias])

    x_t = tf.constant(x)
    got = gradients(layer, tf.identity, x_t)
    want = gradients(plain, tf.nn.relu, x_t)
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g.numpy(), w.numpy())
    assert np.isnan(got[1].numpy()).any() and (got[0].numpy() == 0).any()
    graph = tf.function(lambda x: gradients(layer, tf.identity, x)).get_concrete_function(
        x_t).graph
    (relu_grad,) = [op for op in graph.get_operations() if op.type == "ReluGrad"]
    features = relu_grad.inputs[1].op  # the 0/1 mask, not the float activation
    assert features.type == "Cast" and features.inputs[0].dtype == tf.bool


def test_first_layer_backward_skips_the_input_gradient_in_fit():
    """Keras' train step records the variables, not the batch: the first layer's backward
    computes no dX (grad_a=False), a later layer's does; gradients equal the full ones."""
    keras.utils.set_random_seed(1)
    model = keras.Sequential([keras.Input((6,)), DLUDense(5, activation="relu"), DLUDense(3)])
    x = np.random.default_rng(2).standard_normal((8, 6)).astype(np.float32)

    @tf.function
    def grads(x, watch):
        with tf.GradientTape() as tape:
            if watch:
                tape.watch(x)
            loss = tf.reduce_sum(model(x, training=True) ** 2)
        return tape.gradient(loss, model.trainable_variables)

    graph = grads.get_concrete_function(tf.constant(x), False).graph
    fused = [op for op in graph.get_operations() if op.type == "KerasDluMatmulFused"]
    assert [op.get_attr("compute_grad_a") for op in fused] == [False, True]
    for layer in model.layers:  # the same statistics before both calls
        for state in layer.fixed_point_states.values():
            state.updates.assign(0)
    skipped = grads(tf.constant(x), False)
    for layer in model.layers:
        for state in layer.fixed_point_states.values():
            state.updates.assign(0)
    full = grads(tf.constant(x), True)
    for got, want in zip(skipped, full):
        np.testing.assert_array_equal(got.numpy(), want.numpy())
