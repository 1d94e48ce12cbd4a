"""LearningRateWarmup inside ``model.fit``: the steps really use the warmed-up rate.

The reference is the step itself: a bias-free ``Dense(1)`` fed ones with the loss
``mean(y_pred)`` has gradient exactly 1 with respect to its weight, so plain SGD moves the
weight by exactly the learning rate the step used. The warm-up rule (Goyal et al. 2017) is
restated here independently of the callback's own ``learning_rate_at``.
"""

import keras
import numpy as np
import pytest

from keras_dlu.callbacks import LearningRateWarmup
from keras_dlu.distributed import api

TARGET, SIZE, WARMUP_EPOCHS, STEPS, EPOCHS = 0.8, 4, 2, 4, 4


def expected_rate(epoch, batch):
    progress = min(1.0, (epoch + batch / STEPS) / WARMUP_EPOCHS)
    return TARGET / SIZE + progress * (TARGET - TARGET / SIZE)


class StepRecorder(keras.callbacks.Callback):
    """The learning rate each step used, read off the weight's change (gradient 1)."""

    def __init__(self):
        super().__init__()
        self.used, self.variable_rate = [], []

    def on_train_batch_begin(self, batch, logs=None):
        self._before = float(self.model.layers[0].kernel.numpy()[0, 0])
        self.variable_rate.append(float(self.model.optimizer.learning_rate.numpy()))

    def on_train_batch_end(self, batch, logs=None):
        self.used.append(self._before - float(self.model.layers[0].kernel.numpy()[0, 0]))


@pytest.fixture
def four_ranks(monkeypatch):
    """The callback sees a 4-rank job, as under ``horovodrun -np 4``."""
    monkeypatch.setattr(api, "is_initialized", lambda: True)
    monkeypatch.setattr(api, "size", lambda: SIZE)


def test_fit_steps_follow_the_warmup_then_hold_the_target(four_ranks):
    model = keras.Sequential([keras.Input((1,)),
                              keras.layers.Dense(1, use_bias=False, kernel_initializer="zeros")])
    model.compile(optimizer=keras.optimizers.SGD(TARGET),
                  loss=lambda y_true, y_pred: keras.ops.mean(y_pred))
    recorder = StepRecorder()
    x = np.ones((STEPS * 8, 1), np.float32)
    model.fit(x, np.zeros_like(x), batch_size=8, epochs=EPOCHS, shuffle=False, verbose=0,
              callbacks=[LearningRateWarmup(WARMUP_EPOCHS), recorder])

    expected = [expected_rate(e, b) for e in range(EPOCHS) for b in range(STEPS)]
    np.testing.assert_allclose(recorder.used, expected, rtol=1e-5)
    np.testing.assert_allclose(recorder.variable_rate, expected, rtol=1e-6)
    # It starts at the single-process rate and grows during warm-up ...
    assert recorder.used[0] == pytest.approx(TARGET / SIZE, rel=1e-5)
    assert np.all(np.diff(recorder.used[:WARMUP_EPOCHS * STEPS]) > 0)
    # ... then holds the target: no step after warm-up changes the rate.
    after = recorder.used[WARMUP_EPOCHS * STEPS:]
    np.testing.assert_allclose(after, TARGET, rtol=1e-5)
    assert float(model.optimizer.learning_rate.numpy()) == pytest.approx(TARGET)


def test_a_single_process_run_trains_at_the_target_throughout():
    """With one rank there is nothing to warm up from: every step uses the target."""
    model = keras.Sequential([keras.Input((1,)),
                              keras.layers.Dense(1, use_bias=False, kernel_initializer="zeros")])
    model.compile(optimizer=keras.optimizers.SGD(0.3),
                  loss=lambda y_true, y_pred: keras.ops.mean(y_pred))
    recorder = StepRecorder()
    x = np.ones((16, 1), np.float32)
    model.fit(x, np.zeros_like(x), batch_size=8, epochs=2, verbose=0,
              callbacks=[LearningRateWarmup(1), recorder])
    np.testing.assert_allclose(recorder.used, 0.3, rtol=1e-5)
