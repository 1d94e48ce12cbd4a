"""A Dense kernel's gradient in row blocks: the rows of the whole gradient, bit for bit
where TensorFlow's GEMM sums a slice's rows as it sums the whole (``gemm_rows_are_exact``),
within the summation-order bound elsewhere."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_dlu.callbacks import MemoryOptimizer
from keras_dlu.memory import dense_blocks, inplace, models, plan
from tests.support.memory import (gemm_rows_are_exact, max_weight_difference,
                                  summation_order_bound, train, train_optimized)


def test_kernel_gradient_rows_are_the_rows_of_the_whole_gradient(monkeypatch):
    monkeypatch.setattr(inplace, "BLOCK_BYTES", 2048)  # [300, 24] float32: 20 blocks
    layer = keras.layers.Dense(24, activation="relu")
    layer.build((None, 300))
    rng = np.random.default_rng(0)
    x = tf.constant(rng.normal(size=(16, 300)).astype("float32"))
    seed = tf.constant(rng.normal(size=(16, 24)).astype("float32"))

    @tf.function
    def both():
        with tf.GradientTape(persistent=True) as tape:
            source = tf.identity(x)
            tape.watch(source)
            y = layer(source)
        whole = tape.gradient(y, [source] + layer.trainable_variables, output_gradients=seed)
        dx, grads, rows = dense_blocks.gradients(tape, layer, source, [y], [seed])
        blocks = [rows(a, b) for a, b in inplace.row_blocks(layer.kernel.shape)]
        return whole, [dx, tf.concat(blocks, 0), grads[1]], grads[0] is None

    whole, blocked, kernel_is_none = both()
    assert len(inplace.row_blocks(layer.kernel.shape)) > 10 and kernel_is_none
    for w, b in zip(whole, blocked):  # dX, the kernel's gradient, the bias gradient
        assert float(np.max(np.abs(w))) > 0
    np.testing.assert_array_equal(blocked[0].numpy(), whole[0].numpy())  # dX: one product
    np.testing.assert_array_equal(blocked[2].numpy(), whole[2].numpy())  # the bias
    kernel, reference = blocked[1].numpy(), whole[1].numpy()
    if gemm_rows_are_exact(16, layer.kernel.shape):
        np.testing.assert_array_equal(kernel, reference)
    else:  # the same dot products, summed in another order by TensorFlow's GEMM
        dz = seed.numpy() * (x.numpy() @ layer.kernel.numpy() + layer.bias.numpy() > 0)
        assert np.all(np.abs(kernel - reference) <= summation_order_bound(x.numpy(), dz))


def small_mlp():
    return models.wide_mlp(features=32, width=64, depth=2)


@pytest.mark.parametrize("optimizer", [
    lambda: keras.optimizers.SGD(0.05, momentum=0.9),
    lambda: keras.optimizers.Adam(1e-2),
    lambda: keras.optimizers.AdamW(1e-2, weight_decay=0.1),
    lambda: keras.optimizers.RMSprop(1e-3, momentum=0.5),
])
def test_blocked_kernels_train_bit_for_bit_with_stock_fit(optimizer, monkeypatch):
    monkeypatch.setattr(inplace, "BLOCK_BYTES", 4096)  # kernels of 8 and 16 KiB: blocked
    callback = MemoryOptimizer(verbose=0)
    # steps_per_execution=2: two steps in one graph, where only the control edges of the
    # in-place writes order the second step's reads of a kernel after the first's update
    stock, _, _ = train(small_mlp, optimizer, epochs=1, steps_per_execution=2)
    tuned, _, _ = train_optimized(small_mlp, optimizer, epochs=1, callback=callback,
                                  steps_per_execution=2)
    blocked = [e.name for e in callback.plan.layers if e.dw_blocked]
    # the two hidden kernels (8 and 16 KiB); the 2.5 KiB output kernel is one block
    assert len(blocked) == 2, callback.plan.summary()
    keras.utils.set_random_seed(0)  # the initial weights train() starts from
    assert max_weight_difference(stock, small_mlp()) > 1e-3  # it trained
    exact = all(gemm_rows_are_exact(16, kernel.shape) for kernel in (
        w for w in stock.trainable_weights if len(w.shape) == 2))
    # bit for bit where TensorFlow's GEMM sums a block's rows as the whole's; elsewhere the
    # blocks' last-bit differences (one epoch, 4 steps) stay far below the training's steps
    assert max_weight_difference(stock, tuned) <= (0.0 if exact else 1e-6)


def test_kernels_stay_whole_where_the_update_needs_the_whole_gradient(monkeypatch):
    monkeypatch.setattr(inplace, "BLOCK_BYTES", 4096)
    model = small_mlp()
    assert any(e.dw_blocked for e in plan(model, 8, keras.optimizers.SGD()).layers)
    deferred = plan(model, 8, keras.optimizers.SGD(), fuse_update=False)  # blocks need fusion
    assert not any(e.dw_blocked or e.fused for e in deferred.layers)
    for optimizer in (keras.optimizers.SGD(clipnorm=1.0), keras.optimizers.Adam(clipvalue=1.0),
                      keras.optimizers.Adagrad()):
        assert not any(e.dw_blocked for e in plan(model, 8, optimizer).layers), optimizer
    model.compile(optimizer="sgd", loss="mse", run_eagerly=True)  # no graph to search
    assert not any(e.dw_blocked for e in plan(model, 8).layers)
    assert "row blocks" in plan(small_mlp(), 8, keras.optimizers.SGD()).summary()
