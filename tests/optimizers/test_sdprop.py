"""SDProp against an independent NumPy re-implementation of the author's rule."""

import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

from keras_dlu.optimizers import SDProp


def sdprop_reference(theta, grads, lr=1e-3, gamma=0.99, eps=1e-8, momentum=0.0,
                     bias_correction=True, weight_decay=None, clipnorm=None):
    """The rule of DESIGN.md in float64 NumPy: returns theta after every gradient."""
    theta = np.array(theta, np.float64)
    mu, c, buf = np.zeros_like(theta), np.zeros_like(theta), np.zeros_like(theta)
    for t, g in enumerate(grads, start=1):
        g = np.array(g, np.float64)
        if clipnorm is not None:
            g = g * min(1.0, clipnorm / np.linalg.norm(g))
        if weight_decay is not None:
            theta = theta - theta * weight_decay * lr
        c = gamma * c + gamma * (1 - gamma) * (g - mu) ** 2
        mu = gamma * mu + (1 - gamma) * g
        lr_t = lr * np.sqrt(1 - gamma ** t) if bias_correction else lr
        direction = g / (np.sqrt(c) + eps)
        if momentum > 0:
            buf = momentum * buf + direction
            direction = buf
        theta = theta - lr_t * direction
    return theta


SETTINGS = [
    {},
    {"gamma": 0.9, "lr": 0.01},
    {"momentum": 0.9, "lr": 0.005},
    {"bias_correction": False, "eps": 1e-3, "gamma": 0.95},
    {"weight_decay": 0.1, "clipnorm": 0.5, "lr": 0.01},
]


@pytest.mark.parametrize("setting", SETTINGS)
def test_matches_numpy_reference_over_many_steps(setting):
    rng = np.random.default_rng(1)
    theta0 = rng.normal(size=(7, 5)).astype(np.float32)
    grads = (rng.normal(size=(60, 7, 5)) * rng.uniform(0.1, 3, size=(60, 1, 1))).astype(np.float32)
    kwargs = {"learning_rate": setting.get("lr", 1e-3), "gamma": setting.get("gamma", 0.99),
              "epsilon": setting.get("eps", 1e-8), "momentum": setting.get("momentum", 0.0),
              "bias_correction": setting.get("bias_correction", True),
              "weight_decay": setting.get("weight_decay"), "clipnorm": setting.get("clipnorm")}
    variable = keras.Variable(theta0)
    optimizer = SDProp(**kwargs)
    for g in grads:
        optimizer.apply([keras.ops.convert_to_tensor(g)], [variable])
    expected = sdprop_reference(theta0, grads, lr=kwargs["learning_rate"], gamma=kwargs["gamma"],
                                eps=kwargs["epsilon"], momentum=kwargs["momentum"],
                                bias_correction=kwargs["bias_correction"],
                                weight_decay=kwargs["weight_decay"], clipnorm=kwargs["clipnorm"])
    np.testing.assert_allclose(variable.numpy(), expected, rtol=2e-4, atol=2e-5)
    assert not np.allclose(expected, theta0)


def _embedding_model(optimizer, jit_compile=False):
    model = keras.Sequential([keras.Input((4,), dtype="int32"), keras.layers.Embedding(50, 8),
                              keras.layers.GlobalAveragePooling1D(), keras.layers.Dense(1)])
    model.compile(optimizer=optimizer, loss="mse", jit_compile=jit_compile)
    return model


def test_sparse_embedding_gradients_equal_the_dense_rule():
    import tensorflow as tf

    rng = np.random.default_rng(0)
    table = rng.normal(size=(50, 8)).astype(np.float32)
    variable = keras.Variable(table)
    optimizer = SDProp(learning_rate=0.01)
    dense_grads = []
    for _ in range(20):
        rows = rng.integers(0, 50, size=6)  # duplicates included on purpose
        values = rng.normal(size=(6, 8)).astype(np.float32)
        optimizer.apply([tf.IndexedSlices(tf.constant(values), tf.constant(rows),
                                          tf.constant([50, 8]))], [variable])
        dense = np.zeros_like(table)
        np.add.at(dense, rows, values)
        dense_grads.append(dense)
    expected = sdprop_reference(table, dense_grads, lr=0.01)
    np.testing.assert_allclose(variable.numpy(), expected, rtol=2e-4, atol=2e-5)


@pytest.mark.parametrize("jit_compile", [False, True])
def test_fit_with_embedding_matches_stock_graph_and_jit(jit_compile):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 50, size=(128, 4)).astype(np.int32)
    y = rng.normal(size=(128, 1)).astype(np.float32)
    keras.utils.set_random_seed(0)
    model = _embedding_model(SDProp(0.01), jit_compile=jit_compile)
    first = model.evaluate(x, y, verbose=0)
    model.fit(x, y, batch_size=32, epochs=3, verbose=0)
    assert model.evaluate(x, y, verbose=0) < first
    keras.utils.set_random_seed(0)
    eager = _embedding_model(SDProp(0.01))
    eager.compile(optimizer=SDProp(0.01), loss="mse", run_eagerly=True)
    eager.fit(x, y, batch_size=32, epochs=3, verbose=0, shuffle=False)
    keras.utils.set_random_seed(0)
    graph = _embedding_model(SDProp(0.01), jit_compile=jit_compile)
    graph.fit(x, y, batch_size=32, epochs=3, verbose=0, shuffle=False)
    for a, b in zip(eager.get_weights(), graph.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def _regression_data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(256, 10)).astype(np.float32)
    y = (x @ rng.normal(size=(10, 1))).astype(np.float32)
    return x, y


def test_mixed_precision_loss_scale_optimizer_trains():
    x, y = _regression_data()
    keras.config.set_dtype_policy("mixed_float16")
    try:
        model = keras.Sequential([keras.Input((10,)), keras.layers.Dense(16, activation="relu"),
                                  keras.layers.Dense(1, dtype="float32")])
        optimizer = keras.optimizers.LossScaleOptimizer(SDProp(0.01))
        model.compile(optimizer=optimizer, loss="mse")
        before = model.evaluate(x, y, verbose=0)
        model.fit(x, y, batch_size=32, epochs=5, verbose=0)
        after = model.evaluate(x, y, verbose=0)
    finally:
        keras.config.set_dtype_policy("float32")
    assert model.layers[0].kernel.dtype == "float32"
    assert np.isfinite(after) and after < 0.5 * before


@pytest.mark.parametrize("base", [
    {"clipvalue": 0.1}, {"global_clipnorm": 1.0}, {"use_ema": True, "ema_momentum": 0.5, "ema_overwrite_frequency": 3},
    {"loss_scale_factor": 128.0}, {"gradient_accumulation_steps": 2}, {"weight_decay": 1e-3},
])
def test_every_base_argument_trains(base):
    x, y = _regression_data()
    model = keras.Sequential([keras.Input((10,)), keras.layers.Dense(1)])
    model.compile(optimizer=SDProp(0.05, **base), loss="mse")
    before = model.evaluate(x, y, verbose=0)
    model.fit(x, y, batch_size=32, epochs=4, verbose=0)
    assert model.evaluate(x, y, verbose=0) < 0.7 * before
    assert SDProp.from_config(model.optimizer.get_config()).get_config() == \
        model.optimizer.get_config()


def test_loss_scale_factor_and_accumulation_follow_the_rule():
    rng = np.random.default_rng(3)
    theta0 = rng.normal(size=(4,)).astype(np.float32)
    grads = rng.normal(size=(8, 4)).astype(np.float32)
    variable = keras.Variable(theta0)
    optimizer = SDProp(0.01, loss_scale_factor=64.0, gradient_accumulation_steps=2)
    for g in grads:
        optimizer.apply([keras.ops.convert_to_tensor(g * 64.0)], [variable])
    # the mean of each pair of gradients is applied every second call
    theta = theta0.astype(np.float64)
    mu, c = np.zeros(4), np.zeros(4)
    for k in range(4):
        g = grads[2 * k:2 * k + 2].astype(np.float64).mean(axis=0)
        t = k + 1  # Keras counts applied updates in `iterations` under accumulation
        c = 0.99 * c + 0.99 * 0.01 * (g - mu) ** 2
        mu = 0.99 * mu + 0.01 * g
        theta -= 0.01 * np.sqrt(1 - 0.99 ** t) * g / (np.sqrt(c) + 1e-8)
    np.testing.assert_allclose(variable.numpy(), theta, rtol=1e-4, atol=1e-5)


MIRRORED = textwrap.dedent("""
    from keras_dlu.utils import quiet_tensorflow
    tf = quiet_tensorflow()
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras, numpy as np
    from keras_dlu.optimizers import SDProp
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 5)).astype("float32"); y = x.sum(1, keepdims=True)
    def train(strategy):
        with strategy.scope():
            keras.utils.set_random_seed(0)
            model = keras.Sequential([keras.Input((5,)), keras.layers.Dense(1)])
            model.compile(optimizer=SDProp(0.01), loss="mse")
        model.fit(x, y, batch_size=16, epochs=3, verbose=0, shuffle=False)
        return model.get_weights()
    mirrored = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    assert mirrored.num_replicas_in_sync == 2
    a, b = train(mirrored), train(tf.distribute.get_strategy())
    for u, v in zip(a, b):
        np.testing.assert_allclose(u, v, rtol=1e-4, atol=1e-5)
    print("MIRRORED-OK")
""")


def test_mirrored_strategy_equals_single_device():
    result = subprocess.run([sys.executable, "-c", MIRRORED], capture_output=True, text=True,
                            timeout=180)
    assert "MIRRORED-OK" in result.stdout, result.stdout[-2000:] + result.stderr[-3000:]


def test_save_and_load_resume_identically(tmp_path):
    x, y = _regression_data()
    model = keras.Sequential([keras.Input((10,)), keras.layers.Dense(8, activation="tanh"),
                              keras.layers.Dense(1)])
    model.compile(optimizer=SDProp(0.01, momentum=0.5), loss="mse")
    model.fit(x, y, batch_size=32, epochs=2, verbose=0, shuffle=False)
    model.save(tmp_path / "m.keras")
    restored = keras.models.load_model(tmp_path / "m.keras")
    assert isinstance(restored.optimizer, SDProp) and restored.optimizer.momentum == 0.5
    model.fit(x, y, batch_size=32, epochs=2, verbose=0, shuffle=False)
    restored.fit(x, y, batch_size=32, epochs=2, verbose=0, shuffle=False)
    for a, b in zip(model.get_weights(), restored.get_weights()):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("kwargs, name", [
    ({"learning_rate": 0.0}, "learning_rate"), ({"learning_rate": -1e-3}, "learning_rate"),
    ({"gamma": 1.0}, "gamma"), ({"gamma": 0.0}, "gamma"), ({"epsilon": 0.0}, "epsilon"),
    ({"momentum": 1.0}, "momentum"), ({"momentum": -0.1}, "momentum"),
])
def test_bad_hyperparameters_raise_in_constructor(kwargs, name):
    with pytest.raises(ValueError, match=f"`{name}`"):
        SDProp(**kwargs)
