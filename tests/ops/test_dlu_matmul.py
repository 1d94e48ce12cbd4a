"""dlu_matmul against the NumPy integer reference: products, histograms, non-finite
propagation, stochastic rounding, transposes, gradients and bad input."""

import numpy as np
import pytest
import tensorflow as tf

from keras_dlu.ops import AUTO_GRAD_EXPONENT, dlu_matmul
from tests.support.fixed_point import check_dlu_matmul as _check
from tests.support.fixed_point import dlu_matmul_reference, quantize_int
from tests.support.references import exponent_histogram_reference

pytestmark = pytest.mark.usefixtures("native_ops")


def _operands(m, k, n, rng, scale=1.0):
    a = (rng.standard_normal((m, k)) * scale).astype(np.float32)
    b = (rng.standard_normal((k, n)) * scale).astype(np.float32)
    return a, b


@pytest.mark.parametrize("bits,ea,eb", [(8, -5, -6), (16, -12, -13)])
def test_matches_integer_reference(bits, ea, eb):
    for m, k, n in [(1, 1, 1), (3, 1, 4), (0, 5, 3), (4, 0, 3), (5, 3, 0), (17, 33, 9),
                    (64, 300, 31), (130, 257, 70)]:
        a, b = _operands(m, k, n, np.random.default_rng(m * 100 + k + n))
        _check(a, b, ea, eb, bits)


@pytest.mark.parametrize("bits", [8, 16])
@pytest.mark.parametrize("ea,eb", [(-115, -5), (-125, -12), (60, 61), (110, -108)])
def test_extreme_exponents_subnormal_and_overflowing_products(ea, eb, bits):
    # exponents outside the float fast paths: quantization below 2**-100, products that
    # are subnormal floats or overflow to infinity, exponent sums beyond float's range
    rng = np.random.default_rng(abs(ea) + abs(eb))
    scale = 2.0 ** (bits - 3)
    a = (rng.standard_normal((9, 40)) * scale * 2.0**ea).astype(np.float32)
    b = (rng.standard_normal((40, 6)) * scale * 2.0**eb).astype(np.float32)
    with np.errstate(over="ignore"):
        _check(a, b, ea, eb, bits)


@pytest.mark.parametrize("bits", [8, 16])
def test_saturation_and_half_to_even_edges(bits):
    top = 2 ** (bits - 1)
    # halves round to even; values beyond the range clip to -2**(bits-1) and 2**(bits-1)-1
    row = np.array([0.5, 1.5, 2.5, -0.5, -1.5, -2.5, top - 0.5, top - 1.5, top + 7,
                    -top - 0.5, -top - 9, 1e30, -1e30, 0.0], np.float32)
    a = np.stack([row, -row, row * 0.25]).astype(np.float32)
    b = np.eye(len(row), dtype=np.float32)
    product, _ = _check(a, b, 0, 0, bits)
    want_q = np.array([0, 2, 2, 0, -2, -2, top - 2 if top % 4 == 2 else top - 1, top - 2,
                       top - 1, -top, -top, top - 1, -top, 0], np.float64)
    np.testing.assert_array_equal(product[0], want_q)


def test_large_k_accumulates_in_int64():
    # K * 128 * 128 exceeds int32: every product term is (-128) * (-128) = 2**14.
    k = 140_000
    a = np.full((2, k), -1000.0, np.float32)
    b = np.full((k, 3), -1000.0, np.float32)
    product, _ = dlu_matmul(a, b, 0, 0, bits=8)
    assert np.all(product.numpy() == np.float32(k * 2**14))
    a[1, ::7] = 0.75  # rounds to 1 (nearest of 0.75)
    _check(a, b, 0, 0, 8)


def test_16_bit_over_several_k_chunks():
    a, b = _operands(3, 70_000, 2, np.random.default_rng(5), scale=300.0)
    _check(a, b, 0, -1, 16)
    full_a = np.full((1, 70_000), 40000.0, np.float32)
    full_b = np.full((70_000, 1), -40000.0, np.float32)
    product, _ = dlu_matmul(full_a, full_b, 0, 0, bits=16)
    assert product.numpy()[0, 0] == np.float32(-32767 * 32768 * 70_000)


@pytest.mark.parametrize("bits", [8, 16])
@pytest.mark.parametrize("transpose_a,transpose_b", [(True, False), (False, True), (True, True)])
def test_transposed_operands(transpose_a, transpose_b, bits):
    rng = np.random.default_rng(11)
    a = rng.standard_normal((23, 40) if transpose_a else (40, 23)).astype(np.float32)
    b = rng.standard_normal((19, 23) if transpose_b else (23, 19)).astype(np.float32)
    product, _ = _check(a, b, -5, -4, bits, transpose_a=transpose_a, transpose_b=transpose_b,
                        rounding="stochastic", seed=9)
    assert product.shape == (40, 19)


@pytest.mark.parametrize("bits", [8, 16])
def test_non_finite_rows_and_columns_become_nan(bits):
    a, b = _operands(6, 5, 7, np.random.default_rng(2))
    a[1, 3] = np.nan
    a[4, 0] = np.inf
    b[2, 5] = -np.inf
    b[0, 2] = 1e30  # finite, saturates: not NaN
    product, stats = _check(a, b, -4, -4, bits)
    nan = np.isnan(product)
    assert nan[[1, 4], :].all() and nan[:, 5].all()
    assert nan.sum() == 2 * 7 + 6 - 2
    # the histograms count only finite values
    assert stats[0].sum() == 6 * 5 - 2 and stats[2].sum() == np.isfinite(product).sum() - (
        product == 0).sum()


def test_stochastic_rounding_is_deterministic_per_seed_and_unbiased():
    rng = np.random.default_rng(3)
    a = rng.uniform(-4, 4, (64, 512)).astype(np.float32)
    b = rng.uniform(-4, 4, (512, 48)).astype(np.float32)
    p1, _ = _check(a, b, -3, -3, 8, rounding="stochastic", seed=123)
    p2, _ = dlu_matmul(a, b, -3, -3, rounding="stochastic", seed=123)
    p3, _ = dlu_matmul(a, b, -3, -3, rounding="stochastic", seed=124)
    np.testing.assert_array_equal(p1, p2.numpy())
    assert np.mean(p1 != p3.numpy()) > 0.5
    # unbiased: the mean of many stochastic products approaches the exact float product of
    # the inputs (nearest rounding is biased for this input, stochastic is not)
    a1 = np.full((1, 4096), 0.3, np.float32)
    b1 = np.ones((4096, 1), np.float32)
    products = [dlu_matmul(a1, b1, -2, 0, rounding="stochastic", seed=s)[0].numpy()[0, 0]
                for s in range(20)]
    exact = 0.3 * 4096
    nearest = dlu_matmul(a1, b1, -2, 0)[0].numpy()[0, 0]
    assert nearest == 0.25 * 4096
    # each draw: sum of 4096 Bernoulli(0.2) * 0.25 -> sd 0.25*sqrt(4096*0.16) = 6.4
    assert abs(np.mean(products) - exact) < 4 * 6.4 / np.sqrt(20)
    # seed=None draws a fresh seed each call
    q1, _ = dlu_matmul(a, b, -3, -3, rounding="stochastic")
    q2, _ = dlu_matmul(a, b, -3, -3, rounding="stochastic")
    assert np.mean(q1.numpy() != q2.numpy()) > 0.5


def test_works_in_tf_function_with_unknown_shapes_and_tensor_exponents():
    spec = tf.TensorSpec([None, None], tf.float32)
    fn = tf.function(lambda a, b, ea, eb: dlu_matmul(a, b, ea, eb, bits=16),
                     input_signature=[spec, spec, tf.TensorSpec([], tf.int32),
                                      tf.TensorSpec([], tf.int64)])
    a, b = _operands(9, 13, 5, np.random.default_rng(4))
    product, stats = fn(a, b, tf.constant(-10), tf.constant(-11, tf.int64))
    want_p, want_s = dlu_matmul_reference(a, b, -10, -11, 16)
    np.testing.assert_array_equal(product.numpy(), want_p)
    np.testing.assert_array_equal(stats.numpy(), want_s)


def _grad_reference(g, a, b, eg, ea, eb, bits):
    """dA = 2**(eg+eb) Q(G) Q(B)^T and dB = 2**(ea+eg) Q(A)^T Q(G), exactly."""
    qg, qa, qb = (quantize_int(x, e, bits) for x, e in ((g, eg), (a, ea), (b, eb)))
    da = np.ldexp((qg @ qb.T).astype(np.float64), eg + eb).astype(np.float32)
    db = np.ldexp((qa.T @ qg).astype(np.float64), ea + eg).astype(np.float32)
    return da, db


@pytest.mark.parametrize("bits,ea,eb,eg", [(8, -5, -5, -6), (16, -12, -12, -14)])
def test_gradient_in_fixed_point_and_backward_histograms(bits, ea, eb, eg):
    a, b = _operands(12, 20, 7, np.random.default_rng(6))
    g = np.random.default_rng(7).standard_normal((12, 7)).astype(np.float32) * 0.5
    sink = tf.Variable(tf.zeros([3, 64]))
    a_t, b_t = tf.constant(a), tf.constant(b)
    with tf.GradientTape() as tape:
        tape.watch([a_t, b_t])
        product, _ = dlu_matmul(a_t, b_t, ea, eb, bits=bits, grad_exponent=eg,
                                grad_stats_sink=sink)
        loss = tf.reduce_sum(product * g)
    da, db, dsink = tape.gradient(loss, [a_t, b_t, sink])
    want_da, want_db = _grad_reference(g, a, b, eg, ea, eb, bits)
    np.testing.assert_array_equal(da.numpy(), want_da)
    np.testing.assert_array_equal(db.numpy(), want_db)
    # within the quantization error bound of the float gradient
    tol = 0.5 * 2.0**eg * np.abs(b).sum(1) + 0.5 * 2.0**eb * np.abs(g).sum(1)[:, None] * 1.5
    assert np.all(np.abs(da.numpy() - g @ b.T) <= tol.max())
    np.testing.assert_array_equal(dsink.numpy()[0], exponent_histogram_reference(g))
    np.testing.assert_array_equal(dsink.numpy()[1], exponent_histogram_reference(want_da))
    np.testing.assert_array_equal(dsink.numpy()[2], exponent_histogram_reference(want_db))


@pytest.mark.parametrize("transpose_a,transpose_b", [(True, False), (False, True)])
def test_gradient_with_transposes_and_auto_exponent(transpose_a, transpose_b):
    rng = np.random.default_rng(8)
    a = rng.standard_normal((20, 12) if transpose_a else (12, 20)).astype(np.float32)
    b = rng.standard_normal((7, 20) if transpose_b else (20, 7)).astype(np.float32)
    g = rng.standard_normal((12, 7)).astype(np.float32) * 3.0  # max|G| < 16 -> eg = 3 - 6
    a_t, b_t = tf.constant(a), tf.constant(b)
    with tf.GradientTape() as tape:
        tape.watch([a_t, b_t])
        product, _ = dlu_matmul(a_t, b_t, -5, -5, transpose_a=transpose_a,
                                transpose_b=transpose_b)
        loss = tf.reduce_sum(product * g)
    da, db = tape.gradient(loss, [a_t, b_t])
    eg = int(np.floor(np.log2(np.abs(g).max()))) - 6
    op_a, op_b = (a.T if transpose_a else a), (b.T if transpose_b else b)
    want_da, want_db = _grad_reference(g, op_a, op_b, eg, -5, -5, 8)
    np.testing.assert_array_equal(da.numpy(), want_da.T if transpose_a else want_da)
    np.testing.assert_array_equal(db.numpy(), want_db.T if transpose_b else want_db)
    assert AUTO_GRAD_EXPONENT == -(2**31)


@pytest.mark.parametrize("call,error,match", [
    (lambda: dlu_matmul(np.ones((2, 3, 1), np.float32), np.ones((3, 2), np.float32), 0, 0),
     ValueError, r"`a` must be a matrix"),
    (lambda: dlu_matmul(np.ones((2, 3), np.float32), np.ones(3, np.float32), 0, 0),
     ValueError, r"`b` must be a matrix"),
    (lambda: dlu_matmul(np.ones((2, 3), np.int32), np.ones((3, 2), np.float32), 0, 0),
     TypeError, r"`a` must be a floating-point"),
    (lambda: dlu_matmul(np.ones((2, 3), np.float32), np.ones((4, 2), np.float32), 0, 0),
     ValueError, r"inner dimensions of `a` and `b` do not match"),
    (lambda: dlu_matmul(np.ones((2, 3), np.float32), np.ones((3, 2), np.float32), 0, 0,
                        bits=4), ValueError, r"`bits` must be one of \(8, 16\)"),
    (lambda: dlu_matmul(np.ones((2, 3), np.float32), np.ones((3, 2), np.float32), 0, 0,
                        rounding="up"), ValueError, r"`rounding` must be one of"),
    (lambda: dlu_matmul(np.ones((2, 3), np.float32), np.ones((3, 2), np.float32), 600, 0),
     ValueError, r"`a_exponent` must be in \[-512, 512\]"),
    (lambda: dlu_matmul(np.ones((2, 3), np.float32), np.ones((3, 2), np.float32), 0, 1.5),
     TypeError, r"`b_exponent` must be an integer"),
    (lambda: dlu_matmul(np.ones((2, 3), np.float32), np.ones((3, 2), np.float32), 0, 0,
                        grad_stats_sink=tf.zeros([64])), ValueError, r"`grad_stats_sink`"),
])
def test_bad_input_names_the_argument(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_kernel_rejects_out_of_range_tensor_exponent_and_graph_shape_mismatch():
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"`b_exponent` must be in"):
        dlu_matmul(np.ones((2, 3), np.float32), np.ones((3, 2), np.float32), 0,
                   tf.constant(-900))
    fn = tf.function(lambda a, b: dlu_matmul(a, b, 0, 0)[0],
                     input_signature=[tf.TensorSpec([None, None], tf.float32)] * 2)
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"inner dimensions"):
        fn(np.ones((2, 3), np.float32), np.ones((4, 2), np.float32))


@pytest.mark.gpu
@pytest.mark.parametrize("bits,rounding", [(8, "nearest"), (16, "stochastic")])
def test_gpu_kernel_matches_cpu_bit_for_bit(bits, rounding, cuda_ops):
    a, b = _operands(70, 300, 45, np.random.default_rng(12), scale=8.0)
    a[3, 5] = np.nan
    results = []
    for device in ("/GPU:0", "/CPU:0"):
        with tf.device(device):
            product, stats = dlu_matmul(tf.constant(a), tf.constant(b), -3, -4, bits=bits,
                                        rounding=rounding, seed=5, transpose_b=False)
        results.append((product.numpy(), stats.numpy()))
    np.testing.assert_array_equal(results[0][0], results[1][0])
    np.testing.assert_array_equal(results[0][1], results[1][1])
