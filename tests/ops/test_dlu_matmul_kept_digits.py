"""dlu_matmul(keep_digits=True): the forward keeps the 8-bit digits of both operands and
the backward multiplies them with one quantization of the incoming gradient. Checked
against the re-quantizing backward (keep_digits=False) and the NumPy integer reference,
bit for bit, with saturation, NaN/Inf, stochastic rounding and deep products."""

import numpy as np
import pytest
import tensorflow as tf

from keras_dlu.ops import dlu_matmul
from keras_dlu.ops.loader import load_library
from tests.support.fixed_point import dlu_matmul_reference, quantize_int, signed64
from tests.support.references import exponent_histogram_reference

pytestmark = pytest.mark.usefixtures("native_ops")


def _gradients(a, b, g, ea, eb, eg, keep_digits, **kwargs):
    """(product, stats, dA, dB, d sink) of sum(dlu_matmul(a, b) * g)."""
    sink = tf.Variable(tf.zeros([3, 64]))
    a_t, b_t = tf.constant(a), tf.constant(b)
    with tf.GradientTape() as tape:
        tape.watch([a_t, b_t])
        product, stats = dlu_matmul(a_t, b_t, ea, eb, grad_exponent=eg, grad_stats_sink=sink,
                                    keep_digits=keep_digits, **kwargs)
        loss = tf.reduce_sum(product * g)
    grads = tape.gradient(loss, [a_t, b_t, sink])
    return [t.numpy() for t in (product, stats, *grads)]


def _problem(m, k, n, seed, scale=1.0, b_scale=None, g_scale=None):
    rng = np.random.default_rng(seed)
    return tuple((rng.standard_normal(shape) * (s or scale)).astype(np.float32)
                 for shape, s in (((m, k), None), ((k, n), b_scale), ((m, n), g_scale)))


def _assert_same(kept, requantized):
    for got, want in zip(kept, requantized):
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("rounding,ea,eb,eg", [
    ("nearest", -5, -6, -4),         # the byte-direct quantization pass
    ("nearest", -104, 120, -20),     # outside it: the generic pass
    ("stochastic", -4, -5, -3),
])
def test_kept_digits_backward_equals_requantizing_backward(rounding, ea, eb, eg):
    for m, k, n in [(1, 1, 1), (33, 70, 9), (130, 257, 65), (0, 4, 3), (5, 0, 3)]:
        # about 32 units of each exponent: some digits saturate
        a, b, g = _problem(m, k, n, m + k + n, 2.0**(ea + 5), 2.0**(eb + 5), 2.0**(eg + 5))
        assert np.isfinite(a).all() and np.isfinite(b).all() and np.isfinite(g).all()
        kept = _gradients(a, b, g, ea, eb, eg, True, rounding=rounding, seed=7)
        _assert_same(kept, _gradients(a, b, g, ea, eb, eg, False, rounding=rounding, seed=7))


def test_kept_digits_backward_matches_integer_reference_with_saturation_and_non_finite():
    a, b, g = _problem(12, 20, 7, 1, scale=8.0)  # |x| >= 16 saturates at e = -3
    a[2, 5], a[9, 0] = np.nan, np.inf
    b[4, 3], b[11, 6] = -np.inf, 1e30
    g[6, 2] = np.nan
    product, stats, da, db, dsink = _gradients(a, b, g, -3, -3, -4, True)
    _assert_same([product, stats], dlu_matmul_reference(a, b, -3, -3, 8))
    qa, qb, qg = quantize_int(a, -3, 8), quantize_int(b, -3, 8), quantize_int(g, -4, 8)
    assert (np.abs(qa) == 128).any() and (qb == 127).any()
    want_da = np.ldexp((qg @ qb.T).astype(np.float64), -7).astype(np.float32)
    want_db = np.ldexp((qa.T @ qg).astype(np.float64), -7).astype(np.float32)
    # NaN where G's row or column, or a non-finite row of b (column of b^T) / column of a
    # (row of a^T), meets the product
    want_da[6, :] = np.nan
    want_da[:, 4] = np.nan
    want_db[[0, 5], :] = np.nan
    want_db[:, 2] = np.nan
    np.testing.assert_array_equal(da, want_da)
    np.testing.assert_array_equal(db, want_db)
    np.testing.assert_array_equal(dsink[0], exponent_histogram_reference(g))
    np.testing.assert_array_equal(dsink[1], exponent_histogram_reference(want_da))
    np.testing.assert_array_equal(dsink[2], exponent_histogram_reference(want_db))
    _assert_same([da, db, dsink], _gradients(a, b, g, -3, -3, -4, False)[2:])


def test_deep_batch_accumulates_the_weight_gradient_in_int64():
    # dB = x^T Q(G) sums over M = 70000 rows, more than one int32-safe chunk (2**16)
    a, b, g = _problem(70000, 3, 2, 2, scale=16.0)
    kept = _gradients(a, b, g, 0, 0, 0, True)
    qa, qg = quantize_int(a, 0, 8), quantize_int(g, 0, 8)
    np.testing.assert_array_equal(kept[3], (qa.T @ qg).astype(np.float32))
    _assert_same(kept, _gradients(a, b, g, 0, 0, 0, False))


def test_kept_digits_and_flags_are_the_forward_operands():
    a, b, _ = _problem(6, 5, 4, 3, scale=8.0)
    a[1, 3], b[2, 0] = np.nan, np.inf
    seeds = np.array([signed64(2 * 9), signed64(2 * 9 + 1)], np.int64)
    outputs = load_library().keras_dlu_matmul_fused(
        a, b, -2, -3, seeds, 0, np.zeros([3, 64], np.float32), rounding="stochastic")
    a_digits, a_flags, b_digits, b_flags = (t.numpy() for t in outputs[2:])
    assert a_digits.dtype == np.uint8 and b_digits.dtype == np.int8
    np.testing.assert_array_equal(
        a_digits, quantize_int(a, -2, 8, "stochastic", int(seeds[0])) + 128)
    np.testing.assert_array_equal(b_digits, quantize_int(b, -3, 8, "stochastic", int(seeds[1])))
    np.testing.assert_array_equal(a_flags, [0, 1, 0, 0, 0, 0] + [0, 0, 0, 1, 0])
    np.testing.assert_array_equal(b_flags, [0, 0, 1, 0, 0] + [1, 0, 0, 0])


def test_the_gradient_graph_reads_digits_not_the_float_operands():
    a, b, g = _problem(8, 6, 4, 4)

    @tf.function
    def step(a, b):
        with tf.GradientTape() as tape:
            tape.watch([a, b])
            product, _ = dlu_matmul(a, b, -5, -5, keep_digits=True)
        return tape.gradient(product, [a, b], output_gradients=tf.constant(g))

    graph = step.get_concrete_function(tf.constant(a), tf.constant(b)).graph
    (grad_op,) = [op for op in graph.get_operations() if op.type == "KerasDluMatmulFusedGrad"]
    assert [t.dtype for t in grad_op.inputs[1:5]] == [tf.uint8, tf.uint8, tf.int8, tf.uint8]
    placeholders = {op.outputs[0].ref() for op in graph.get_operations()
                    if op.type == "Placeholder"}
    assert not any(t.ref() in placeholders for t in grad_op.inputs)
    assert not [op for op in graph.get_operations() if op.type == "KerasDluMatmul"]


@pytest.mark.parametrize("kwargs", [dict(bits=16), dict(transpose_a=True),
                                    dict(transpose_b=True)])
def test_keep_digits_rejects_16_bits_and_transposes(kwargs):
    with pytest.raises(ValueError, match=r"`keep_digits=True` needs bits=8 and no transposes"):
        dlu_matmul(np.ones((3, 3), np.float32), np.ones((3, 3), np.float32), 0, 0,
                   keep_digits=True, **kwargs)


def test_backward_kernel_rejects_mismatched_digits_and_flags():
    library = load_library()
    digits = np.zeros((2, 3), np.uint8), np.zeros((3, 4), np.int8)
    with pytest.raises((ValueError, tf.errors.InvalidArgumentError), match=r"`a_flags`"):
        library.keras_dlu_matmul_fused_grad(
            np.ones((2, 4), np.float32), digits[0], np.zeros(4, np.uint8), digits[1],
            np.zeros(7, np.uint8), 0, 0, 0, np.int64(0))
    with pytest.raises((ValueError, tf.errors.InvalidArgumentError), match=r"do not match"):
        library.keras_dlu_matmul_fused_grad(
            np.ones((2, 5), np.float32), digits[0], np.zeros(5, np.uint8), digits[1],
            np.zeros(7, np.uint8), 0, 0, 0, np.int64(0))


def test_without_grad_a_only_the_second_operand_gets_its_gradient():
    a, b, g = _problem(40, 9, 5, 9)
    sink = tf.Variable(tf.zeros([3, 64]))
    a_t, b_t = tf.constant(a), tf.constant(b)
    with tf.GradientTape() as tape:
        tape.watch([a_t, b_t])
        product, _ = dlu_matmul(a_t, b_t, -5, -5, grad_exponent=-4, grad_stats_sink=sink,
                                keep_digits=True, grad_a=False)
        loss = tf.reduce_sum(product * g)
    da, db, dsink = tape.gradient(loss, [a_t, b_t, sink])
    want = _gradients(a, b, g, -5, -5, -4, True)
    assert da is None
    np.testing.assert_array_equal(db.numpy(), want[3])
    np.testing.assert_array_equal(dsink.numpy()[[0, 2]], want[4][[0, 2]])
    assert not dsink.numpy()[1].any() and want[4][1].any()
    with pytest.raises(ValueError, match=r"`grad_a=False` needs keep_digits=True"):
        dlu_matmul(a, b, 0, 0, grad_a=False)


@pytest.mark.parametrize("ea,eb,eg", [(-5, -6, -4), (-70, -70, -4)])  # float / int32 route
def test_without_product_histograms_only_those_rows_are_zeros(ea, eb, eg):
    a, b, g = _problem(70, 130, 150, 3, 2.0**(ea + 5), 2.0**(eb + 5), 2.0**(eg + 5))
    a[3, 7] = np.nan
    counted = _gradients(a, b, g, ea, eb, eg, True)
    skipped = _gradients(a, b, g, ea, eb, eg, True, product_histograms=False)
    for got, want in zip(skipped[:1] + skipped[2:4], counted[:1] + counted[2:4]):
        np.testing.assert_array_equal(got, want)  # product, dA, dB unchanged
    np.testing.assert_array_equal(skipped[1][:2], counted[1][:2])  # operands' histograms
    np.testing.assert_array_equal(skipped[4][0], counted[4][0])  # incoming gradient's
    assert counted[1][2].any() and counted[4][1:].any()
    assert not skipped[1][2].any() and not skipped[4][1:].any()
    with pytest.raises(ValueError, match=r"`product_histograms=False` needs keep_digits=True"):
        dlu_matmul(a, b, ea, eb, product_histograms=False)
