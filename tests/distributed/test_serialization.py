"""DistributedOptimizer and the distributed callbacks serialize like any Keras object."""

import keras
import numpy as np
import pytest

from keras_dlu.callbacks import BroadcastGlobalVariables, LearningRateWarmup, MetricAverage
from keras_dlu.distributed import DistributedOptimizer


def test_config_round_trip_keeps_the_inner_optimizer_and_every_setting():
    optimizer = DistributedOptimizer(keras.optimizers.Adam(0.003), fusion_threshold_bytes=123,
                                     first_bucket_bytes=45, last_bucket_bytes=33,
                                     chain_segment_bytes=21,
                                     priority="after_all",
                                     large_tensor_bytes=678, large_tensor_strategy="allreduce",
                                     segment_bytes=90, compression="fp16",
                                     backward_passes_per_step=2)
    restored = keras.optimizers.deserialize(keras.optimizers.serialize(optimizer))
    assert isinstance(restored, DistributedOptimizer)
    assert restored.get_config() == optimizer.get_config()
    assert isinstance(restored.inner_optimizer, keras.optimizers.Adam)
    assert float(restored.learning_rate) == pytest.approx(0.003)
    assert DistributedOptimizer.is_distributed_wrapper is True
    for argument in ("last_bucket_bytes", "chain_segment_bytes"):
        off = DistributedOptimizer("sgd", **{argument: None})
        assert keras.optimizers.deserialize(keras.optimizers.serialize(off)).get_config()[
            argument] is None


def test_model_with_distributed_optimizer_survives_save_and_load(tmp_path):
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    model.compile(optimizer=DistributedOptimizer(keras.optimizers.SGD(0.2), segment_bytes=77),
                  loss="mse")
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    assert isinstance(loaded.optimizer, DistributedOptimizer)
    assert loaded.optimizer.get_config()["segment_bytes"] == 77
    np.testing.assert_array_equal(loaded.get_weights()[0], model.get_weights()[0])


def test_learning_rate_delegates_to_the_inner_optimizer():
    inner = keras.optimizers.SGD(0.5)
    optimizer = DistributedOptimizer(inner)
    optimizer.learning_rate = 0.25
    assert float(inner.learning_rate) == pytest.approx(0.25)


@pytest.mark.parametrize("callback", [BroadcastGlobalVariables(2), MetricAverage(),
                                      LearningRateWarmup(3, 0.1, steps_per_epoch=10)])
def test_callbacks_round_trip_their_config(callback):
    restored = keras.saving.deserialize_keras_object(
        keras.saving.serialize_keras_object(callback))
    assert restored.get_config() == callback.get_config()
    assert keras.saving.get_registered_object(
        f"keras_dlu>{type(callback).__name__}") is type(callback)


def test_warmup_ramps_linearly_from_rate_over_size_to_the_target():
    warmup = LearningRateWarmup(warmup_epochs=2, target_learning_rate=0.8, steps_per_epoch=4)
    assert warmup.learning_rate_at(0, 0, size=4) == pytest.approx(0.2)
    assert warmup.learning_rate_at(1, 0, size=4) == pytest.approx(0.5)
    assert warmup.learning_rate_at(2, 0, size=4) == pytest.approx(0.8)
    assert warmup.learning_rate_at(5, 3, size=4) == pytest.approx(0.8)


@pytest.mark.parametrize("kwargs, argument", [({"warmup_epochs": 0}, "warmup_epochs"),
                                              ({"steps_per_epoch": 0}, "steps_per_epoch"),
                                              ({"target_learning_rate": -1.0},
                                               "target_learning_rate")])
def test_warmup_rejects_bad_arguments(kwargs, argument):
    with pytest.raises(ValueError, match=argument):
        LearningRateWarmup(**kwargs)


def test_broadcast_rejects_a_negative_root():
    with pytest.raises(ValueError, match="root_rank"):
        BroadcastGlobalVariables(-1)
