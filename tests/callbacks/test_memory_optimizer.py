"""MemoryOptimizer: configuration, bad arguments and the fallbacks that keep fit stock."""

import keras
import pytest

from keras_dlu.callbacks import MemoryOptimizer
from keras_dlu.memory import models
from tests.support.memory import max_weight_difference, train


def tiny():
    return models.wide_mlp(features=16, width=16, depth=1)


def test_get_config_round_trip():
    callback = MemoryOptimizer(fuse_update=False, verbose=0)
    config = callback.get_config()
    assert config == {"fuse_update": False, "verbose": 0}
    again = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(callback))
    assert isinstance(again, MemoryOptimizer) and again.get_config() == config


@pytest.mark.parametrize("kwargs,name", [({"fuse_update": 1}, "fuse_update"),
                                         ({"verbose": 2}, "verbose"),
                                         ({"verbose": True}, "verbose")])
def test_bad_arguments_are_value_errors(kwargs, name):
    with pytest.raises(ValueError, match=name):
        MemoryOptimizer(**kwargs)


class AllGradients(keras.optimizers.SGD):
    requires_all_gradients = True


class Wrapper(keras.optimizers.SGD):
    is_distributed_wrapper = True


class CustomStep(keras.Sequential):
    def train_step(self, data):
        return super().train_step(data)


def regularized():
    return keras.Sequential([keras.Input((16,)), keras.layers.Dense(
        8, kernel_regularizer="l2"), keras.layers.Dense(10)])


FALLBACKS = [
    (tiny, lambda: keras.optimizers.SGD(0.1, global_clipnorm=0.1), "global_clipnorm"),
    (tiny, lambda: AllGradients(0.1), "every gradient"),
    (tiny, lambda: Wrapper(0.1), "distributed wrapper"),
    (lambda: CustomStep([keras.Input((16,)), keras.layers.Dense(10)]),
     lambda: keras.optimizers.SGD(0.1), "train_step"),
    (regularized, lambda: keras.optimizers.SGD(0.1), "regularizer"),
    (tiny, lambda: keras.optimizers.LossScaleOptimizer(keras.optimizers.SGD(0.1)),
     "LossScaleOptimizer"),
]


@pytest.mark.parametrize("build,optimizer,words", FALLBACKS)
def test_fallback_prints_reason_and_trains_as_stock(build, optimizer, words):
    stock, stock_history, _ = train(build, optimizer, epochs=1)
    callback = MemoryOptimizer()
    tuned, tuned_history, printed = train(build, optimizer, epochs=1, callbacks=[callback])
    assert "not applied" in printed and words in printed
    assert words in callback.fallback_reason and callback.plan is None
    assert max_weight_difference(stock, tuned) == 0.0
    assert tuned_history == stock_history
