"""DLUConv2D (im2col + integer GEMM) against stock Keras Conv2D and a NumPy reference."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_dlu.layers import DLUConv2D
from keras_dlu.ops.loader import built_with_cuda
from keras_dlu.quantization import FixedPointPolicy
from tests.support.dlu_layers import (fixed_point_product, quantize_nearest,
                                       required_exponent_reference)

pytestmark = pytest.mark.usefixtures("native_ops")


def conv_pair(bits, input_shape, **kwargs):
    layer = DLUConv2D(4, 3, policy=FixedPointPolicy(bits=bits, overflow_rate=0.0), **kwargs)
    layer.build(input_shape)
    reference = keras.layers.Conv2D(4, 3, **kwargs)
    reference.build(input_shape)
    reference.set_weights([layer.kernel.numpy(), layer.bias.numpy()])
    return layer, reference


CASES = [{"padding": "valid"}, {"padding": "same", "strides": 2},
         {"padding": "same", "dilation_rate": 2}, {"padding": "valid", "strides": (1, 2)}]


@pytest.mark.parametrize("kwargs", CASES)
def test_forward_and_gradients_match_conv2d_on_quantized_operands(kwargs):
    """With the operands quantized by NumPy, stock Conv2D gives the same result exactly
    (up to float32 rounding): the integer GEMM computes the same sums."""
    bits = 8
    shape = (2, 9, 8, 3)
    layer, reference = conv_pair(bits, shape, **kwargs)
    rng = np.random.default_rng(len(str(kwargs)))
    x = rng.standard_normal(shape).astype(np.float32)
    kernel = layer.kernel.numpy()
    ex, ek = required_exponent_reference(x, bits), required_exponent_reference(kernel, bits)
    qx = (quantize_nearest(x, ex, bits) * 2.0 ** ex).astype(np.float32)
    qk = (quantize_nearest(kernel, ek, bits) * 2.0 ** ek).astype(np.float32)
    reference.kernel.assign(qk)
    xt = tf.constant(x)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(xt)
        y = layer(xt, training=True)
        dy = tf.constant(rng.standard_normal(y.shape).astype(np.float32) * 1e-2)
        loss = tf.reduce_sum(y * dy)
    expected = reference(qx).numpy()
    np.testing.assert_allclose(y.numpy(), expected, rtol=1e-5, atol=1e-5)
    assert np.abs(y.numpy() - keras.layers.Conv2D.call(reference, x).numpy()).max() > 0
    # Backward: both products use Q(dy) with dy's own exponent.
    eg = required_exponent_reference(dy, bits)
    qdy = (quantize_nearest(dy, eg, bits) * 2.0 ** eg).astype(np.float32)
    qxt = tf.constant(qx)
    with tf.GradientTape() as ref_tape:
        ref_tape.watch(qxt)
        ref_loss = tf.reduce_sum(reference(qxt) * qdy)
    dx_ref, dk_ref = ref_tape.gradient(ref_loss, [qxt, reference.kernel])
    dx, dk = tape.gradient(loss, [xt, layer.kernel])
    np.testing.assert_allclose(dx, dx_ref, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(dk, dk_ref, rtol=1e-5, atol=1e-6)
    assert int(layer.fixed_point_states["gradients"].updates.numpy()) == 1


def test_im2col_product_equals_integer_reference():
    bits = 16
    layer, _ = conv_pair(bits, (1, 5, 5, 2), padding="valid")
    x = np.random.default_rng(0).standard_normal((1, 5, 5, 2)).astype(np.float32)
    kernel = layer.kernel.numpy()
    ex, ek = required_exponent_reference(x, bits), required_exponent_reference(kernel, bits)
    patches = np.stack([x[0, i:i + 3, j:j + 3, :].ravel() for i in range(3) for j in range(3)])
    expected = fixed_point_product(patches, kernel.reshape(-1, 4), ex, ek, bits)
    got = layer(x).numpy().reshape(9, 4) - layer.bias.numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("kwargs, argument", [
    ({"bits": 12}, "bits"), ({"rounding": "floor"}, "rounding"),
    ({"data_format": "channels_first"}, "data_format"), ({"groups": 2}, "groups"),
])
def test_bad_arguments(kwargs, argument):
    with pytest.raises(ValueError, match=f"`{argument}`"):
        DLUConv2D(4, 3, **kwargs)


def test_save_load_restores_state(tmp_path):
    model = keras.Sequential([keras.Input((8, 8, 1)),
                              DLUConv2D(3, 3, bits=8, activation="relu"),
                              keras.layers.Flatten(), keras.layers.Dense(2)])
    x = np.random.default_rng(0).standard_normal((8, 8, 8, 1)).astype(np.float32)
    model.compile(optimizer="adam", loss="mse")
    model.fit(x, np.zeros((8, 2), np.float32), epochs=1, verbose=0)
    model.save(tmp_path / "conv.keras")
    loaded = keras.models.load_model(tmp_path / "conv.keras")
    for original, restored in zip(model.layers[0].weights, loaded.layers[0].weights):
        np.testing.assert_array_equal(original.numpy(), restored.numpy())
    assert loaded.layers[0].get_config() == model.layers[0].get_config()
    np.testing.assert_array_equal(model.predict(x, verbose=0), loaded.predict(x, verbose=0))


@pytest.mark.parametrize("bits, gather", [(8, "KerasDluConv2dFused"), (16, "KerasDluIm2col")])
def test_patches_and_their_gradient_come_from_the_native_ops(bits, gather):
    """The training graph gathers patches natively (8 bits on the CPU: from the image's
    digits inside KerasDluConv2dFused; 16 bits: KerasDluIm2col's float patches) and sums
    the input gradient with KerasDluCol2im, never with tf.image.extract_patches (whose
    gradient was the profiled bottleneck)."""
    if bits == 8 and built_with_cuda() and tf.config.list_logical_devices("GPU"):
        pytest.skip("with a GPU the 8-bit layer keeps the CUDA product")
    layer = DLUConv2D(4, 3, bits=bits, padding="same", strides=2)
    x = tf.constant(np.random.default_rng(0).standard_normal((2, 9, 8, 3)), tf.float32)
    layer.build(x.shape)

    @tf.function
    def step(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = tf.reduce_sum(layer(x, training=True))
        return tape.gradient(loss, x)

    graph_def = step.get_concrete_function(x).graph.as_graph_def()
    op_types = {node.op for node in graph_def.node}
    for function in graph_def.library.function:  # the layer's and the gradient's bodies
        op_types |= {node.op for node in function.node_def}
    assert {gather, "KerasDluCol2im"} <= op_types
    assert "ExtractImagePatches" not in op_types
    if bits == 8:  # no float patches: the image is quantized once, its bytes gathered
        assert "KerasDluIm2col" not in op_types
