"""The allocator statistics behind every peak figure, with and without TensorFlow's oneDNN."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import tensorflow as tf

from keras_dlu.memory import allocator


def test_peak_above_current_counts_a_temporary_and_not_what_was_held_before():
    held = tf.ones([256, 1024])  # 1 MiB resident before the measured call
    temporary_bytes = 4 * 512 * 1024

    @tf.function
    def step(x):
        return tf.reduce_sum(tf.tile(x, [2, 1]) * 2.0)  # a 2 MiB temporary, freed inside

    step(held)
    peak, total = allocator.peak_above_current(lambda: step(held).numpy(), "CPU:0")
    assert temporary_bytes <= peak < 3 * temporary_bytes, peak
    assert np.isclose(total, 2.0 * 2 * 256 * 1024)


_WITHOUT_ONEDNN = textwrap.dedent("""
    import json, warnings
    import keras
    from keras_dlu.memory import allocator, measure_update_factor, step_peak_bytes
    from keras_dlu.memory.measure import stock_train_function
    result = {"stats": allocator.stats_available("CPU:0")}
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    model.compile(optimizer="sgd", loss="mse")
    weights = [w.copy() for w in model.get_weights()]
    try:
        step_peak_bytes(stock_train_function(model), [[1.0] * 4], [[0.0] * 2])
    except RuntimeError as error:
        result["error"] = str(error)
    result["trained"] = any((a != b).any() for a, b in zip(weights, model.get_weights()))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result["factor"] = measure_update_factor(keras.optimizers.Adam())
    result["warnings"] = [str(w.message) for w in caught]
    print(json.dumps(result))
""")


def test_without_onednn_a_peak_fails_loudly_and_the_update_factor_is_assumed():
    # TensorFlow leaves oneDNN off by default on CPUs without AVX-512 VNNI (AMD EPYC);
    # TF_ENABLE_ONEDNN_OPTS=0 gives that process on any CPU.
    env = dict(os.environ, TF_ENABLE_ONEDNN_OPTS="0", TF_CPP_MIN_LOG_LEVEL="2")
    done = subprocess.run([sys.executable, "-c", _WITHOUT_ONEDNN], env=env, timeout=300,
                          capture_output=True, text=True, check=True)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["stats"] is False
    assert "TF_ENABLE_ONEDNN_OPTS=1" in result["error"]
    assert not result["trained"]  # refused before the first step changed a weight
    assert result["factor"] == 3.0  # UNMEASURED_UPDATE_FACTOR; Adam measures 2.0
    assert any("TF_ENABLE_ONEDNN_OPTS=1" in w for w in result["warnings"])
