"""plan(model, batch_size): sizes, the larger-first order, predictions and bad input."""

import keras
import numpy as np
import pytest

from keras_dlu.memory import models, plan


def test_plan_sizes_and_order_for_a_dense_stack():
    model = models.wide_mlp(features=32, width=64, depth=2)
    result = plan(model, 8, update_factor=1.0)
    names = [entry.name for entry in result.layers]
    assert names == [layer.name for layer in model.layers]
    first, second, head = result.layers
    assert first.dx_bytes == 0  # nothing upstream needs the input's gradient
    assert first.dw_bytes == (32 * 64 + 64) * 4
    assert second.dx_bytes == 8 * 64 * 4 and second.activation_bytes == 8 * 64 * 4
    assert second.dw_first  # 64x64 weights are larger than an 8x64 input gradient
    assert not plan(model, 512, update_factor=1.0).layers[1].dw_first
    assert result.predicted_optimized_bytes < result.predicted_stock_bytes
    assert "predicted peak" in result.summary()


def test_plan_defers_updates_whose_temporaries_cost_more():
    model = models.vgg_style(image_size=16, width=8, dense=256)
    cheap = plan(model, 8, update_factor=0.0)
    assert all(entry.fused for entry in cheap.layers if entry.dw_bytes)
    for factor in (1.0, 3.0, 50.0):
        costly = plan(model, 256, update_factor=factor)
        assert costly.predicted_optimized_bytes <= costly.predicted_stock_bytes
    assert not all(e.fused for e in plan(model, 256, update_factor=50.0).layers)


def test_update_factor_is_measured_from_the_optimizer():
    model = models.wide_mlp(features=8, width=8, depth=1)
    sgd = plan(model, 4, optimizer=keras.optimizers.SGD()).update_factor
    rms = plan(model, 4, optimizer=keras.optimizers.RMSprop()).update_factor
    assert 0.0 <= sgd < rms


@pytest.mark.parametrize("batch_size", [0, -3, 2.5, "8", True, None, np.float32(4)])
def test_bad_batch_size_is_a_value_error(batch_size):
    with pytest.raises(ValueError, match="batch_size"):
        plan(models.wide_mlp(features=8, width=8, depth=1), batch_size)


def test_bad_update_factor_and_model_are_value_errors():
    with pytest.raises(ValueError, match="update_factor"):
        plan(models.wide_mlp(features=8, width=8, depth=1), 4, update_factor=-1)

    class Sub(keras.Model):
        def call(self, x):
            return x

    with pytest.raises(ValueError, match="model"):
        plan(Sub(), 4)
