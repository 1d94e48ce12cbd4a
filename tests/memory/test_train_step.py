"""The restructured step trains to stock fit's weights; it lowers the measured peak."""

import keras
import pytest

from keras_dlu.callbacks import MemoryOptimizer
from keras_dlu.memory import inplace, models
from keras_dlu.memory.probe import isolated_peaks
from tests.support.memory import batch_data, max_weight_difference, train


def small_vgg():
    return models.vgg_style(image_size=16, width=8, dense=256)


def small_resnet():
    return models.resnet_style(image_size=8, width=8, blocks=1)


def small_mlp():
    return models.wide_mlp(features=32, width=64, depth=2)


CASES = [
    (small_vgg, lambda: keras.optimizers.SGD(0.05, momentum=0.9), 1),
    (small_resnet, lambda: keras.optimizers.Adam(
        keras.optimizers.schedules.ExponentialDecay(1e-2, 2, 0.5)), 1),
    (small_mlp, lambda: keras.optimizers.AdamW(1e-2, weight_decay=0.1, clipnorm=0.5), 3),
    (lambda: models.alexnet_style(image_size=16, dense=64),
     lambda: keras.optimizers.RMSprop(1e-3, clipvalue=0.1), 1),
]


@pytest.mark.slow
@pytest.mark.parametrize("build,optimizer,steps_per_execution", CASES)
def test_weights_and_logs_equal_stock_fit(build, optimizer, steps_per_execution):
    stock, stock_history, _ = train(build, optimizer, steps_per_execution=steps_per_execution)
    tuned, tuned_history, printed = train(
        build, optimizer, callbacks=[MemoryOptimizer()],
        steps_per_execution=steps_per_execution)
    assert "MemoryOptimizer plan" in printed
    assert max_weight_difference(stock, tuned) <= 1e-5
    assert int(stock.optimizer.iterations.numpy()) == int(tuned.optimizer.iterations.numpy())
    for key, values in stock_history.items():
        assert tuned_history[key] == pytest.approx(values, abs=1e-5), key


def test_chain_model_is_bit_for_bit():
    stock, _, _ = train(small_mlp, lambda: keras.optimizers.Adam(1e-2), epochs=1)
    tuned, _, _ = train(small_mlp, lambda: keras.optimizers.Adam(1e-2), epochs=1,
                        callbacks=[MemoryOptimizer(verbose=0)])
    assert max_weight_difference(stock, tuned) == 0.0


def softmax_mlp():
    return keras.Sequential([keras.Input((32,)), keras.layers.Dense(64, activation="relu"),
                             keras.layers.Dense(10, activation="softmax")])


def test_probability_outputs_train_like_stock():
    # Keras' crossentropy reads a softmax output's logits rather than the output itself,
    # so the backward pass must start from them; otherwise no gradient reaches any layer.
    args = dict(optimizer=lambda: keras.optimizers.Adam(1e-2), epochs=1,
                loss="sparse_categorical_crossentropy")
    stock, stock_history, _ = train(softmax_mlp, **args)
    tuned, tuned_history, _ = train(softmax_mlp, callbacks=[MemoryOptimizer(verbose=0)], **args)
    keras.utils.set_random_seed(0)  # the initial weights train() starts from
    initial = softmax_mlp()
    assert max_weight_difference(stock, initial) > 1e-3  # the comparison can fail
    assert max_weight_difference(stock, tuned) <= 1e-6
    assert tuned_history["loss"] == pytest.approx(stock_history["loss"], abs=1e-6)


@pytest.mark.parametrize("optimizer", [
    lambda: keras.optimizers.SGD(0.05),
    lambda: keras.optimizers.SGD(0.05, momentum=0.5, clipvalue=0.1, weight_decay=0.01),
])
def test_in_place_sgd_updates_are_bit_for_bit(optimizer):
    assert inplace.supported(optimizer())
    stock, _, _ = train(small_mlp, optimizer, epochs=1)
    tuned, _, _ = train(small_mlp, optimizer, epochs=1, callbacks=[MemoryOptimizer(verbose=0)])
    assert max_weight_difference(stock, tuned) == 0.0


def test_in_place_path_only_for_plain_sgd():
    assert not inplace.supported(keras.optimizers.SGD(0.1, momentum=0.9, nesterov=True))
    assert not inplace.supported(keras.optimizers.SGD(0.1, use_ema=True))
    assert not inplace.supported(keras.optimizers.Adam())


def test_stock_train_function_is_restored_after_fit():
    callback = MemoryOptimizer(verbose=0)
    model, _, _ = train(small_mlp, "sgd", epochs=1, callbacks=[callback])
    assert callback.plan is not None and callback.fallback_reason is None
    stock = model.train_function
    x, y = batch_data(model, n=16)
    model.fit(x, y, epochs=1, verbose=0)
    assert model.train_function is stock


@pytest.mark.slow
def test_peak_memory_reduced_on_alexnet_style_model():
    # Measured in a fresh process with one inter-op thread (a fixed executor schedule):
    # stock 8.38-8.69 MiB, optimized 4.38-4.69 MiB over 3 runs x 4 steps (worst 0.56x).
    # A smaller VGG-style model (6 MiB of dense gradients) still varied 4-8 MiB between
    # processes, too close to its saving to assert on.
    peaks = isolated_peaks("alexnet_style", 8, dict(image_size=32, dense=1024), repeats=4)
    stock, optimized = peaks["stock_peaks"], peaks["optimized_peaks"]
    assert min(stock) > 0, stock
    # The dense weight gradients (4 + 4 MiB) dominate at batch 8; fused in-place updates
    # keep one alive at a time. The worst optimized step against the best stock step:
    assert max(optimized) <= 0.7 * min(stock), (optimized, stock)
