"""The tfmot bridge: a tf_keras model annotated and quantize_apply-ed with DLU arithmetic."""

import subprocess
import sys

import numpy as np
import pytest

pytestmark = pytest.mark.usefixtures("native_ops")


def test_import_keras_dlu_does_not_import_tfmot():
    code = ("import sys, keras_dlu, keras_dlu.quantization; "
            "print('tensorflow_model_optimization' in sys.modules, 'tf_keras' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=120, check=True)
    assert result.stdout.split() == ["False", "False"]


def quantized_mlp(**scheme):
    """A 6-8-2 tf_keras MLP (seed 0), annotated and quantize_apply-ed with the DLU scheme."""
    import tensorflow_model_optimization as tfmot
    import tf_keras

    from keras_dlu.quantization import tfmot as dlu_tfmot

    tf_keras.utils.set_random_seed(0)
    model = tf_keras.Sequential([tf_keras.Input((6,)),
                                 tf_keras.layers.Dense(8, activation="relu"),
                                 tf_keras.layers.Dense(2, activation="softmax")])
    annotated = tfmot.quantization.keras.quantize_annotate_model(model)
    with dlu_tfmot.quantize_scope():
        return tfmot.quantization.keras.quantize_apply(
            annotated, scheme=dlu_tfmot.DLUQuantizeScheme(**scheme))


@pytest.mark.slow
def test_quantize_apply_with_dlu_scheme_trains_and_quantizes(tmp_path):
    import tf_keras

    from keras_dlu.quantization import tfmot as dlu_tfmot

    quantized = quantized_mlp(bits=8, overflow_rate=0.0)
    wrapper = quantized.layers[1]
    assert isinstance(wrapper.quantize_config, dlu_tfmot.DLUQuantizeConfig)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((256, 6)).astype(np.float32)
    y = (x[:, 0] + x[:, 1] > 0).astype(np.int64)
    quantized.compile(optimizer=tf_keras.optimizers.Adam(0.02),
                      loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    history = quantized.fit(x, y, batch_size=32, epochs=5, verbose=0)
    assert history.history["accuracy"][-1] > 0.9
    # The kernel the layer used is the 8-bit fixed-point image of the float kernel.
    names = {w.name.split("/")[-1].split(":")[0]: w for w in wrapper.weights}
    exponent = int(names["kernel_exponent"].numpy())
    assert int(names["kernel_updates"].numpy()) == 40
    float_kernel = [w for w in wrapper.trainable_weights if "kernel" in w.name][0].numpy()
    q = np.clip(np.round(float_kernel / 2.0 ** exponent), -128, 127) * 2.0 ** exponent
    quantizer = dlu_tfmot.DynamicFixedPointQuantizer(bits=8)
    got = quantizer(float_kernel, False, {"exponent": names["kernel_exponent"],
                                          "histograms": names["kernel_histograms"],
                                          "updates": names["kernel_updates"]})
    np.testing.assert_array_equal(got.numpy(), q)
    assert np.abs(q - float_kernel).max() > 0
    assert quantizer == dlu_tfmot.DynamicFixedPointQuantizer.from_config(quantizer.get_config())


def test_bad_arguments():
    from keras_dlu.quantization import tfmot as dlu_tfmot

    with pytest.raises(ValueError, match="`bits`"):
        dlu_tfmot.DynamicFixedPointQuantizer(bits=4)
    with pytest.raises(ValueError, match="`rounding`"):
        dlu_tfmot.DLUQuantizeScheme(rounding="up")


@pytest.mark.slow
def test_a_saved_quantized_model_loads_under_quantize_scope(tmp_path):
    """save -> load inside ``quantize_scope``: same DLU config, weights, exponents, outputs.

    HDF5, the format tfmot documents: tfmot 0.8.1's wrappers do not rebuild from tf_keras'
    ``.keras`` zip format (the load fails with "expected 8 variables, but received 10").
    """
    import tf_keras

    from keras_dlu.quantization import tfmot as dlu_tfmot

    quantized = quantized_mlp(bits=16)
    x = np.random.default_rng(1).standard_normal((64, 6)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64)
    quantized.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    quantized.fit(x, y, batch_size=16, epochs=2, verbose=0)
    path = str(tmp_path / "quantized.h5")
    quantized.save(path)

    with dlu_tfmot.quantize_scope():
        loaded = tf_keras.models.load_model(path)
    wrapper = loaded.layers[1]
    assert isinstance(wrapper.quantize_config, dlu_tfmot.DLUQuantizeConfig)
    assert wrapper.quantize_config.get_config() == quantized.layers[1].quantize_config.get_config()
    # Layer prefixes are regenerated on load; the weights keep their order and own names.
    short = [w.name.split("/")[-1] for w in quantized.weights]
    assert [w.name.split("/")[-1] for w in loaded.weights] == short
    for name, saved, restored in zip(short, quantized.weights, loaded.weights):
        np.testing.assert_array_equal(restored.numpy(), saved.numpy(), err_msg=name)
    assert "kernel_exponent:0" in short and "kernel_updates:0" in short  # the DLU state too
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), quantized.predict(x, verbose=0))
