"""Reference training for the MemoryOptimizer tests: stock fit versus fit with the callback."""

import contextlib
import io

import keras
import numpy as np


def batch_data(model, n=64, classes=10, seed=0):
    """Random inputs of the model's input shape and integer labels."""
    rng = np.random.default_rng(seed)
    shape = (n,) + tuple(model.inputs[0].shape[1:])
    return rng.normal(size=shape).astype("float32"), rng.integers(0, classes, size=(n,))


def train(build, optimizer, callbacks=(), epochs=2, batch_size=16, steps_per_execution=1,
          metrics=("accuracy",), n=64, loss=None):
    """Builds ``build()`` with seed 0, fits it and returns (model, history, stdout).

    ``loss`` defaults to sparse categorical crossentropy from logits.
    """
    keras.utils.set_random_seed(0)
    model = build()
    model.compile(
        optimizer=optimizer() if callable(optimizer) else optimizer,
        loss=loss or keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=list(metrics),
        steps_per_execution=steps_per_execution,
    )
    x, y = batch_data(model, n=n)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        history = model.fit(x, y, batch_size=batch_size, epochs=epochs, shuffle=False,
                            verbose=0, callbacks=list(callbacks))
    return model, history.history, out.getvalue()


def train_optimized(build, optimizer, callback=None, **kwargs):
    """``train`` with a ``MemoryOptimizer``, asserting that the rewritten step ran.

    The plan is made when the rewritten step is traced, so a plan and no fallback
    reason prove that ``fit`` ran the restructured step, not stock's.
    """
    from keras_dlu.callbacks import MemoryOptimizer

    callback = callback or MemoryOptimizer(verbose=0)
    model, history, printed = train(build, optimizer, callbacks=[callback], **kwargs)
    assert callback.fallback_reason is None, callback.fallback_reason
    assert callback.plan is not None, "the rewritten train step was never traced"
    return model, history, printed


def max_weight_difference(a, b):
    """Largest absolute difference over all weights (trainable and not) of two models."""
    return max(
        float(np.max(np.abs(np.asarray(u) - np.asarray(v)))) if np.size(u) else 0.0
        for u, v in zip(a.get_weights(), b.get_weights())
    )


def gemm_rows_are_exact(batch, kernel_shape, seed=0):
    """Whether TensorFlow's MatMul on this CPU gives the row blocks of a kernel gradient
    ``x^T dz`` (``keras_dlu.memory.inplace.row_blocks``, current ``BLOCK_BYTES``) bit for
    bit equal to the rows of the whole product. True on the AVX-512 Xeons this project
    was measured on; on AVX2 CPUs (AMD EPYC) the GEMM's summation order depends on the
    row count, so blocks differ from the whole in the last bits."""
    import tensorflow as tf

    from keras_dlu.memory import inplace

    rng = np.random.default_rng(seed)
    x = tf.constant(rng.normal(size=(batch, kernel_shape[0])).astype("float32"))
    dz = tf.constant(rng.normal(size=(batch, kernel_shape[1])).astype("float32"))
    whole = tf.raw_ops.MatMul(a=x, b=dz, transpose_a=True).numpy()
    blocks = [tf.raw_ops.MatMul(a=x[:, a:b], b=dz, transpose_a=True).numpy()
              for a, b in inplace.row_blocks(kernel_shape)]
    return bool(np.array_equal(np.concatenate(blocks), whole))


def summation_order_bound(x, seed):
    """Bound on how far two summation orders of ``x^T seed`` can differ in float32: the
    batch length times the unit roundoff times the sum of the terms' magnitudes."""
    x, seed = np.abs(np.asarray(x, np.float64)), np.abs(np.asarray(seed, np.float64))
    return 2 * x.shape[0] * np.finfo(np.float32).eps * (x.T @ seed)
