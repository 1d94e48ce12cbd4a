"""Writes stable_gru_sdprop_tensorflow.keras/.npz, the file test_pure_keras loads on every
backend: a StableGRU ("power") + SDProp model trained a few steps on the TensorFlow backend,
its predictions on fixed inputs and the saved warm-start basis.

    KERAS_BACKEND=tensorflow .venv/bin/python tests/backends/data/make_tensorflow_model.py
"""

import os

import keras
import numpy as np

from keras_dlu.layers import StableGRU
from keras_dlu.optimizers import SDProp

HERE = os.path.dirname(os.path.abspath(__file__))


def main():
    assert keras.backend.backend() == "tensorflow"
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(16, 6, 3)).astype("float32")
    y = rng.normal(size=(16, 1)).astype("float32")
    layer = StableGRU(8, spectral_bound=1.5, projection="power")
    model = keras.Sequential([keras.Input((6, 3)), layer, keras.layers.Dense(1)])
    model.compile(SDProp(learning_rate=0.05, gamma=0.95), "mse")
    model.fit(x, y, batch_size=8, epochs=3, verbose=0)
    model.save(os.path.join(HERE, "stable_gru_sdprop_tensorflow.keras"))
    np.savez(os.path.join(HERE, "stable_gru_sdprop_tensorflow.npz"), x=x,
             y=model.predict(x, verbose=0),
             basis=keras.ops.convert_to_numpy(layer._spectral_projection.basis))


if __name__ == "__main__":
    main()
