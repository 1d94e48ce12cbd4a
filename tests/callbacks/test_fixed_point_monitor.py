"""FixedPointMonitor: the TensorBoard events hold the layers' exponents and histograms."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_dlu.callbacks import FixedPointMonitor
from keras_dlu.layers import DLUDense

pytestmark = pytest.mark.usefixtures("native_ops")


def read_events(log_dir):
    values = {}
    for path in sorted(log_dir.glob("events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            for value in event.summary.value:
                values.setdefault(value.tag, []).append(
                    (event.step, tf.make_ndarray(value.tensor), value.metadata.plugin_data.plugin_name))
    return values


def test_writes_exponents_histograms_and_plot(tmp_path, tmp_reports):
    model = keras.Sequential([keras.Input((5,)), DLUDense(4, activation="relu", name="a"),
                              DLUDense(1, name="b")])
    model.compile(optimizer="sgd", loss="mse")
    x = np.random.default_rng(0).standard_normal((64, 5)).astype(np.float32)
    monitor = FixedPointMonitor(tmp_path / "logs")
    model.fit(x, x[:, :1], batch_size=16, epochs=3, verbose=0, callbacks=[monitor])
    events = read_events(tmp_path / "logs")
    assert len([tag for tag in events if tag.endswith("/exponent")]) == 6
    steps, exponents = zip(*[(s, v) for s, v, _ in events["a/gradients/exponent"]])
    assert steps == (1, 2, 3)
    assert exponents[-1] == model.layers[0].fixed_point_states["gradients"].exponent.numpy()
    _, buckets, plugin = events["b/inputs/histogram"][-1]
    assert plugin == "histograms" and buckets.shape == (64, 3)
    np.testing.assert_array_equal(
        buckets[:, 2], model.layers[1].fixed_point_states["inputs"].histograms.numpy()[-1])
    assert buckets[32, 0] == 0 and buckets[32, 1] == 1  # bucket [p, p+1) for p = 0
    assert monitor.plot_path == str(tmp_reports / "fixed_point_exponents.png")
    assert (tmp_reports / "fixed_point_exponents.png").stat().st_size > 1000
    assert monitor.trajectories["a/kernel"][0][0] == 1


def test_batch_frequency_and_config(tmp_path):
    monitor = FixedPointMonitor(tmp_path, update_freq=2, plot_name=None)
    model = keras.Sequential([keras.Input((3,)), DLUDense(2)])
    model.compile(optimizer="sgd", loss="mse")
    model.fit(np.ones((8, 3), np.float32), np.ones((8, 2), np.float32), batch_size=2,
              verbose=0, callbacks=[monitor])
    assert [step for step, _ in monitor.trajectories["dlu_dense/inputs"]] == [2, 4]
    assert monitor.plot_path is None
    assert FixedPointMonitor(**monitor.get_config()).get_config() == monitor.get_config()


def test_round_trips_through_keras_serialization(tmp_path):
    monitor = FixedPointMonitor(tmp_path / "logs", update_freq=3, plot_name="exps")
    config = keras.saving.serialize_keras_object(monitor)
    assert config["registered_name"] == "keras_dlu>FixedPointMonitor"
    restored = keras.saving.deserialize_keras_object(config)
    assert type(restored) is FixedPointMonitor and restored is not monitor
    assert restored.get_config() == monitor.get_config()


@pytest.mark.parametrize("kwargs, argument", [
    ({"log_dir": ""}, "log_dir"), ({"log_dir": "x", "update_freq": 0}, "update_freq"),
    ({"log_dir": "x", "update_freq": "batch"}, "update_freq"),
    ({"log_dir": "x", "plot_name": 3}, "plot_name"),
])
def test_bad_arguments(kwargs, argument):
    with pytest.raises(ValueError, match=f"`{argument}`"):
        FixedPointMonitor(**kwargs)
