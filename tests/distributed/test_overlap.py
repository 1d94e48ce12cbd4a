"""ForwardOverlap / overlap.make_train_function in one process: same weights, really used."""

import keras
import numpy as np
import pytest

from keras_dlu.callbacks import ForwardOverlap
from keras_dlu.distributed import overlap


def model_and_data(steps_per_execution):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(16, activation="tanh"),
                              keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="mse",
                  steps_per_execution=steps_per_execution)
    x = np.random.default_rng(0).normal(size=(44, 8)).astype("float32")
    return model, x, x[:, :1] ** 2


class FunctionSpy(keras.callbacks.Callback):
    """Records which train function each call of the fit loop is about to use."""

    def __init__(self):
        super().__init__()
        self.used = []

    def on_train_batch_begin(self, batch, logs=None):
        self.used.append((batch, self.model.train_function))


def test_several_steps_per_graph_give_the_weights_and_losses_of_one_step_per_call():
    reference, x, y = model_and_data(1)
    expected = reference.fit(x, y, batch_size=4, epochs=2, shuffle=False, verbose=0)
    model, _, _ = model_and_data(4)
    overlapped, spy = ForwardOverlap(), FunctionSpy()
    history = model.fit(x, y, batch_size=4, epochs=2, shuffle=False, verbose=0,
                        callbacks=[overlapped, spy])
    for got, want in zip(model.get_weights(), reference.get_weights()):
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)
    np.testing.assert_allclose(history.history["loss"], expected.history["loss"], rtol=1e-6)
    assert int(model.optimizer.iterations.numpy()) == 22
    # 11 batches per epoch: calls at 0 and 4 run 4 steps in one graph, the call at 8 (3 left)
    # is Keras' own; afterwards Keras' function is back in place
    keras_function, ours = overlapped._functions
    assert [(b, f is ours) for b, f in spy.used] == [(0, True), (4, True), (8, False)] * 2
    assert model.train_function is keras_function


def test_one_step_per_call_is_rejected_with_the_setting_named():
    model, x, y = model_and_data(1)
    with pytest.raises(ValueError, match="steps_per_execution"):
        model.fit(x, y, batch_size=4, verbose=0, callbacks=[ForwardOverlap()])
    with pytest.raises(ValueError, match="steps"):
        overlap.make_train_function(model, 1)


def test_data_of_unknown_length_warns_and_uses_keras_function():
    import tensorflow as tf

    model, x, y = model_and_data(2)
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).filter(lambda *_: True).batch(4)
    assert dataset.cardinality() == tf.data.UNKNOWN_CARDINALITY
    spy = FunctionSpy()
    with pytest.warns(UserWarning, match="unknown"):
        model.fit(dataset, verbose=0, callbacks=[ForwardOverlap(), spy])
    assert spy.used and all(f is spy.used[0][1] for _, f in spy.used)


def test_the_callback_round_trips_through_its_config():
    callback = keras.saving.deserialize_keras_object(
        keras.saving.serialize_keras_object(ForwardOverlap()))
    assert isinstance(callback, ForwardOverlap)
