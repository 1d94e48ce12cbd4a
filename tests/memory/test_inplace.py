"""In-place block updates: bit for bit Keras' own update, written into the variables."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_dlu.memory import inplace

UPDATES = [
    lambda: keras.optimizers.Adam(1e-2),
    lambda: keras.optimizers.Adam(keras.optimizers.schedules.ExponentialDecay(1e-2, 2, 0.5),
                                  clipnorm=0.3),
    lambda: keras.optimizers.AdamW(1e-2, weight_decay=0.1, beta_1=0.8, epsilon=1e-4),
    lambda: keras.optimizers.SGD(0.05, momentum=0.9, weight_decay=0.01, clipvalue=0.5),
    lambda: keras.optimizers.SGD(0.05),
    lambda: keras.optimizers.SGD(0.05, momentum=0.8, nesterov=True),
    lambda: keras.optimizers.RMSprop(1e-3),
    lambda: keras.optimizers.RMSprop(1e-3, rho=0.8, momentum=0.5, centered=True,
                                     weight_decay=0.01),
]


@pytest.mark.parametrize("make", UPDATES)
def test_in_place_update_is_bit_for_bit_with_keras_over_several_blocks(make, monkeypatch):
    monkeypatch.setattr(inplace, "BLOCK_BYTES", 4096)  # [300, 37] float32: 7 row blocks
    rng = np.random.default_rng(0)
    shapes = [(300, 37), (1000,), (5, 4, 3, 2), ()]
    start = [rng.normal(size=s).astype("float32") for s in shapes]
    steps = [[(rng.normal(size=s) * 10.0 ** rng.integers(-4, 2, size=s)).astype("float32")
              for s in shapes] for _ in range(4)]

    def run(fused):
        variables = [keras.Variable(w.copy()) for w in start]
        optimizer = make()
        optimizer.build(variables)

        @tf.function
        def step(grads):
            if not fused:
                return optimizer.apply(list(grads), variables)
            with tf.control_dependencies(inplace.apply(optimizer, list(grads), variables)):
                optimizer.iterations.assign_add(1)

        for grads in steps:
            step([tf.constant(g) for g in grads])
        return [v.numpy() for v in variables] + [v.numpy() for v in optimizer.variables]

    assert inplace.supported(make())
    stock, fused = run(False), run(True)
    for s, f, w in zip(stock, fused, start):
        assert np.max(np.abs(s - w)) > 0  # every variable moved
    for s, f in zip(stock, fused):  # the weights, then every slot and the iterations
        np.testing.assert_array_equal(f, s)


def test_block_update_writes_into_the_variable_without_a_copy_of_it():
    # Keras' update of a 16 MiB variable allocates whole-size temporaries; the block update
    # writes each block into the variable's own buffer: peak about one block of gradient
    # and temporaries, and no copy of the variable (copy-on-read would add 16 MiB).
    variable = keras.Variable(np.ones((4096, 1024), "float32"))
    optimizer = keras.optimizers.Adam(1e-3)
    optimizer.build([variable])

    @tf.function
    def step():
        rows = lambda start, stop: tf.fill([stop - start, 1024], 1e-3)  # noqa: E731
        with tf.control_dependencies(inplace.apply_blocks(optimizer, variable, rows)):
            optimizer.iterations.assign_add(1)

    step()
    tf.config.experimental.reset_memory_stats("CPU:0")
    before = tf.config.experimental.get_memory_info("CPU:0")["current"]
    step()
    info = tf.config.experimental.get_memory_info("CPU:0")
    assert info["peak"] - before <= 8 * inplace.BLOCK_BYTES, info["peak"] - before
    assert info["current"] - before <= inplace.BLOCK_BYTES
    assert np.all(variable.numpy() < 1.0)  # the update reached the variable


def test_in_place_path_for_sgd_adam_adamw_rmsprop_only():
    for optimizer in (keras.optimizers.Adam(), keras.optimizers.AdamW(),
                      keras.optimizers.SGD(0.1, momentum=0.9, nesterov=True),
                      keras.optimizers.RMSprop(momentum=0.9, centered=True)):
        assert inplace.supported(optimizer), optimizer
    for optimizer in (keras.optimizers.SGD(0.1, use_ema=True),
                      keras.optimizers.Adam(amsgrad=True), keras.optimizers.Adagrad(),
                      keras.optimizers.RMSprop(gradient_accumulation_steps=2)):
        assert not inplace.supported(optimizer), optimizer
