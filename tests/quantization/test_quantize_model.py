"""quantize_model: structure, weights, training and save/load of the quantized copy."""

import keras
import numpy as np
import pytest

from keras_dlu.layers import DLUConv2D, DLUDense
from keras_dlu.quantization import FixedPointPolicy, quantize_model

pytestmark = pytest.mark.usefixtures("native_ops")


def functional_cnn():
    inputs = keras.Input((10, 10, 1))
    x = keras.layers.Conv2D(4, 3, activation="relu", name="conv")(inputs)
    x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(8, activation="relu", name="hidden")(x)
    outputs = keras.layers.Dense(3, activation="softmax", name="out")(x)
    return keras.Model(inputs, outputs)


def test_functional_copy_replaces_layers_and_copies_weights():
    model = functional_cnn()
    policy = FixedPointPolicy(bits=16, overflow_rate=1e-3)
    copy = quantize_model(model, bits=16, policy=policy)
    kinds = {layer.name: type(layer) for layer in copy.layers}
    assert kinds["conv"] is DLUConv2D and kinds["hidden"] is DLUDense and kinds["out"] is DLUDense
    assert all(layer.policy is policy for layer in copy.layers if hasattr(layer, "policy"))
    for name in ("conv", "hidden", "out"):
        original, new = model.get_layer(name), copy.get_layer(name)
        np.testing.assert_array_equal(original.kernel.numpy(), new.kernel.numpy())
        assert new.get_config()["activation"] == original.get_config()["activation"]
    # Same function up to the 16-bit quantization; the original is untouched.
    x = np.random.default_rng(0).random((4, 10, 10, 1)).astype(np.float32)
    np.testing.assert_allclose(copy.predict(x, verbose=0), model.predict(x, verbose=0),
                               atol=2e-3)
    assert all(type(layer) not in (DLUDense, DLUConv2D) for layer in model.layers)


def test_sequential_mlp_trains_and_survives_save_load(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((512, 12)).astype(np.float32)
    y = (x[:, :4].sum(axis=1) > 0).astype(np.int64)
    model = keras.Sequential([keras.Input((12,)), keras.layers.Dense(16, activation="relu"),
                              keras.layers.Dense(2, activation="softmax")])
    copy = quantize_model(model, bits=8)
    copy.compile(optimizer=keras.optimizers.Adam(0.01),
                 loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    history = copy.fit(x, y, batch_size=32, epochs=4, verbose=0)
    assert history.history["accuracy"][-1] > 0.9
    states = copy.layers[0].fixed_point_states
    assert int(states["gradients"].updates.numpy()) == 64
    assert states["inputs"].histograms.numpy().sum() > 0
    copy.save(tmp_path / "q.keras")
    loaded = keras.models.load_model(tmp_path / "q.keras")
    assert isinstance(loaded.layers[0], DLUDense) and loaded.layers[0].bits == 8
    for layer, restored in zip(copy.layers, loaded.layers):
        for name, state in layer.fixed_point_states.items():
            other = restored.fixed_point_states[name]
            np.testing.assert_array_equal(state.histograms.numpy(), other.histograms.numpy())
            assert int(state.exponent.numpy()) == int(other.exponent.numpy())
    np.testing.assert_array_equal(copy.predict(x, verbose=0), loaded.predict(x, verbose=0))


class Subclassed(keras.Model):
    def __init__(self):
        super().__init__()
        self.dense = keras.layers.Dense(2)

    def call(self, x):
        return self.dense(x)


@pytest.mark.parametrize("kwargs, argument", [
    ({"bits": 4}, "bits"), ({"bits": None}, "bits"), ({"rounding": "up"}, "rounding"),
    ({"bits": 16, "policy": FixedPointPolicy(bits=8)}, "bits"),
])
def test_bad_arguments(kwargs, argument):
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    with pytest.raises(ValueError, match=f"`{argument}`"):
        quantize_model(model, **kwargs)


def test_subclassed_model_is_rejected():
    with pytest.raises(ValueError, match="`model`"):
        quantize_model(Subclassed())
