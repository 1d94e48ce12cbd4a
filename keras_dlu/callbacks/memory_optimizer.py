"""``MemoryOptimizer``: a callback that installs a memory-reordered training step.

Reference: Shirahata, Tomita, Ike, "Memory reduction method for deep neural network
training", IEEE MLSP 2016 (Fujitsu): per layer, compute the larger of the input gradient
and the weight gradient first and end its lifetime at once, applying the weight update as
soon as the weight gradient exists, so the allocator can reuse the buffer.
"""

import keras

from keras_dlu.memory.compat import unsupported_reason
from keras_dlu.memory.keras_internals import make_train_function
from keras_dlu.memory.planner import measure_update_factor
from keras_dlu.memory.planner import plan as make_plan
from keras_dlu.memory.train_step import make_train_step


@keras.saving.register_keras_serializable(package="keras_dlu")
class MemoryOptimizer(keras.callbacks.Callback):
    """Trains with a backward pass reordered to lower the peak of memory.

    At ``on_train_begin`` the callback measures the optimizer's update temporaries,
    replaces the model's compiled train
    function with one built from the restructured step of
    ``keras_dlu.memory.train_step``: layer by layer from the last, the larger of dX and dW
    first, and (``fuse_update``) each layer's optimizer update applied as soon as its
    gradients exist, in place for SGD, Adam, AdamW and RMSprop (``keras_dlu.memory.inplace``,
    bit for bit with Keras' update), a large Dense kernel's gradient computed and applied
    in row blocks so it never exists whole (``keras_dlu.memory.dense_blocks``), the order
    fixed by control edges so it holds under any inter-op threading. (In place means in
    the variables' buffers: an eager ``tf.Tensor`` of a weight read before ``fit`` and
    still held sees the updates; ``get_weights()`` and ``.numpy()`` copies do not.) The
    step is planned (``keras_dlu.memory.plan``) when it is traced, for the batch size of
    the traced batch. Weights after training equal stock ``fit``'s. Where the restructuring
    cannot apply (global-norm clipping, an optimizer with ``requires_all_gradients``, a
    distributed wrapper, a custom ``train_step``, regularization losses, ...), the reason
    is printed and ``fit`` runs exactly as stock. The stock train function is restored at
    ``on_train_end``.

    Args:
        fuse_update: bool, default True. Apply each layer's update as soon as its weight
            gradient exists (so the weight gradients of all layers never coexist); with
            False only the order of the backward pass is changed.
        verbose: 0 or 1, default 1. With 1 the plan (per-layer sizes, order and predicted
            peak) or the fallback reason is printed at the start of training.

    Attributes:
        plan: the ``MemoryPlan`` in use (None before training or after a fallback).
        fallback_reason: why stock training was kept, or None.
    """

    def __init__(self, fuse_update=True, verbose=1):
        super().__init__()
        if not isinstance(fuse_update, bool):
            raise ValueError(
                f"fuse_update must be True or False; received {fuse_update!r}."
            )
        if isinstance(verbose, bool) or verbose not in (0, 1):
            raise ValueError(f"verbose must be 0 or 1; received {verbose!r}.")
        self.fuse_update = fuse_update
        self.verbose = verbose
        self.plan = None
        self.fallback_reason = None
        self._stock_function = None

    def _plan_for(self, factor):
        def plan_for(batch_size):
            self.plan = make_plan(self.model, batch_size or 32, update_factor=factor,
                                  fuse_update=self.fuse_update)
            if self.verbose:
                note = "" if batch_size else " (batch size not static: planned for 32)"
                print(self.plan.summary() + note)
            return self.plan

        return plan_for

    def on_train_begin(self, logs=None):
        model = self.model
        self.plan = None
        self.fallback_reason = unsupported_reason(model)
        if self.fallback_reason is not None:
            if self.verbose:
                print(
                    "MemoryOptimizer: not applied, training as stock Keras: "
                    f"{self.fallback_reason}."
                )
            return
        if not model.optimizer.built:
            model.optimizer.build(model.trainable_variables)
        factor = measure_update_factor(model.optimizer)
        self._stock_function = model.train_function
        model.train_function = make_train_function(
            model, make_train_step(model, self._plan_for(factor), fuse_update=self.fuse_update)
        )

    def on_train_end(self, logs=None):
        if self._stock_function is not None:
            self.model.train_function = self._stock_function
            self._stock_function = None

    def get_config(self):
        return {"fuse_update": self.fuse_update, "verbose": self.verbose}

    @classmethod
    def from_config(cls, config):
        return cls(**config)
