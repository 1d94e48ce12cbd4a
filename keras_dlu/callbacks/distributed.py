"""Keras 3 callbacks for Horovod training: broadcast, metric averaging, learning-rate warm-up,
forward overlap.

References: Horovod's Keras callbacks (Sergeev & Del Balso 2018), rewritten for Keras 3
variables and optimizers; the warm-up follows Goyal et al. 2017 ("Accurate, Large
Minibatch SGD"), as Fujitsu's large-scale runs do (Yamazaki et al.).
All collective names are fixed strings or derived from variable positions, never from
Keras' auto-generated names, so they agree on every rank.
"""

import keras
import numpy as np
import tensorflow as tf

from keras_dlu.distributed import api, overlap


def _model_and_optimizer_variables(model):
    variables = list(model.variables)
    optimizer = getattr(model, "optimizer", None)
    if optimizer is not None and getattr(optimizer, "built", False):
        variables += list(optimizer.variables)
    return variables


class _ConfigurableCallback(keras.callbacks.Callback):
    """A Keras callback that ``keras.saving`` can rebuild from ``get_config()``."""

    @classmethod
    def from_config(cls, config):
        return cls(**config)


def broadcast_variables(variables, root_rank=0, prefix="kdlu.bcast"):
    """Overwrites ``variables`` (Keras 3 or tf variables) with ``root_rank``'s values."""
    hvd = api.require_initialized("broadcast_variables")
    if hvd.size() == 1:
        return
    for index, variable in enumerate(variables):
        value = variable.value if isinstance(variable, keras.Variable) else variable
        received = hvd.broadcast(tf.convert_to_tensor(value), root_rank,
                                 name=f"{prefix}.{index}", ignore_name_scope=True)
        variable.assign(received)


@keras.saving.register_keras_serializable(package="keras_dlu")
class BroadcastGlobalVariables(_ConfigurableCallback):
    """Copies root's model weights and optimizer state to every rank before training.

    Runs at the start of ``fit`` (after Keras has built the model and the optimizer and
    before the first update), so ranks that initialized their weights differently all
    start from ``root_rank``'s. Also checks, before any broadcast, that every rank has
    the same variable shapes (a ``ValueError`` naming the variable otherwise).

    Args:
        root_rank: the rank whose values are kept (default 0).
    """

    def __init__(self, root_rank=0):
        super().__init__()
        if isinstance(root_rank, bool) or not isinstance(root_rank, int) or root_rank < 0:
            raise ValueError(f"`root_rank` must be a non-negative integer, got {root_rank!r}.")
        self.root_rank = root_rank
        self.broadcast_done = False

    def on_train_begin(self, logs=None):
        if self.broadcast_done:
            return
        hvd = api.require_initialized("BroadcastGlobalVariables")
        if self.root_rank >= hvd.size():
            raise ValueError(f"`root_rank` is {self.root_rank} but the job has only "
                             f"{hvd.size()} ranks.")
        from keras_dlu.distributed.optimizer import check_same_shapes

        variables = _model_and_optimizer_variables(self.model)
        check_same_shapes(hvd, variables)
        broadcast_variables(variables, self.root_rank)
        self.broadcast_done = True

    def get_config(self):
        return {"root_rank": self.root_rank}


@keras.saving.register_keras_serializable(package="keras_dlu")
class MetricAverage(_ConfigurableCallback):
    """Replaces each epoch's logged metrics by their average over all ranks.

    Place it before callbacks that read the logs (checkpointing, early stopping) so they
    see the job-wide value. Keys are reduced in sorted order under fixed names. This rank's
    own values of the last epoch stay in ``local_logs``.
    """

    def __init__(self):
        super().__init__()
        self.local_logs = {}

    def on_epoch_end(self, epoch, logs=None):
        if not logs:
            return
        self.local_logs = dict(logs)
        hvd = api.require_initialized("MetricAverage")
        keys = sorted(k for k, v in logs.items() if np.ndim(v) == 0 and
                      isinstance(float(v), float))
        if not keys:
            return
        values = tf.constant([float(logs[k]) for k in keys], dtype=tf.float64)
        averaged = hvd.allreduce(values, op=hvd.Average, name="kdlu.metric_average",
                                 ignore_name_scope=True).numpy()
        for key, value in zip(keys, averaged):
            logs[key] = float(value)

    def get_config(self):
        return {}


@keras.saving.register_keras_serializable(package="keras_dlu")
class LearningRateWarmup(_ConfigurableCallback):
    """Ramps the learning rate from ``target / size`` to ``target`` over the first epochs.

    With N ranks the global batch is N times larger, so the target learning rate is
    usually scaled by N; starting at the single-process rate and growing linearly per
    batch avoids the early divergence this causes (Goyal et al. 2017). Works on any Keras
    3 optimizer, including :class:`keras_dlu.distributed.DistributedOptimizer`.

    Args:
        warmup_epochs: epochs of warm-up (default 5); must be > 0.
        target_learning_rate: the rate reached at the end (default ``None``: the
            optimizer's learning rate when training begins).
        steps_per_epoch: batches per epoch (default ``None``: taken from ``fit``).
        verbose: print the rate at the end of warm-up (default 0).
    """

    def __init__(self, warmup_epochs=5, target_learning_rate=None, steps_per_epoch=None,
                 verbose=0):
        super().__init__()
        if isinstance(warmup_epochs, bool) or not isinstance(warmup_epochs, (int, float)) \
                or not warmup_epochs > 0:
            raise ValueError(f"`warmup_epochs` must be a positive number, got {warmup_epochs!r}.")
        if target_learning_rate is not None and not target_learning_rate > 0:
            raise ValueError("`target_learning_rate` must be positive or None, got "
                             f"{target_learning_rate!r}.")
        if steps_per_epoch is not None and (not isinstance(steps_per_epoch, int)
                                            or steps_per_epoch < 1):
            raise ValueError(f"`steps_per_epoch` must be a positive integer or None, got "
                             f"{steps_per_epoch!r}.")
        self.warmup_epochs = warmup_epochs
        self.target_learning_rate = target_learning_rate
        self.steps_per_epoch = steps_per_epoch
        self.verbose = verbose
        self._epoch = 0

    def on_train_begin(self, logs=None):
        if self.target_learning_rate is None:
            self.target_learning_rate = float(
                keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def learning_rate_at(self, epoch, batch, size):
        """The rate used at ``batch`` of ``epoch`` (0-based) with ``size`` ranks."""
        steps = self.steps_per_epoch or (self.params or {}).get("steps") or 1
        progress = min(1.0, (epoch + batch / steps) / self.warmup_epochs)
        return self.target_learning_rate * (1.0 / size + progress * (1.0 - 1.0 / size))

    def on_train_batch_begin(self, batch, logs=None):
        if self._epoch >= self.warmup_epochs + 1:
            return
        size = api.size() if api.is_initialized() else 1
        self.model.optimizer.learning_rate = self.learning_rate_at(self._epoch, batch, size)

    def on_epoch_end(self, epoch, logs=None):
        if self.verbose and epoch + 1 == int(np.ceil(self.warmup_epochs)):
            print(f"LearningRateWarmup: learning rate {self.model.optimizer.learning_rate:.6g} "
                  f"after {self.warmup_epochs} warm-up epochs.")

    def get_config(self):
        return {"warmup_epochs": self.warmup_epochs,
                "target_learning_rate": self.target_learning_rate,
                "steps_per_epoch": self.steps_per_epoch, "verbose": self.verbose}


@keras.saving.register_keras_serializable(package="keras_dlu")
class ForwardOverlap(_ConfigurableCallback):
    """Lets the next steps' forward passes overlap this step's gradient averaging.

    Compile with ``steps_per_execution=K`` (K >= 2) and pass this callback to ``fit``:
    each call of the train function then runs K steps in one traced graph
    (:func:`keras_dlu.distributed.overlap.make_train_function`), so layer ``l`` of step
    ``t+1`` waits only for layer ``l``'s own update of step ``t`` (Fujitsu's forward
    overlap, Yamazaki et al. 2016) instead of for the whole step. Same weights as K single
    steps. A last call of an epoch with fewer than K batches left, and data of unknown
    length, use Keras' own train function (a warning says so for unknown length).
    Callbacks see one batch event per K steps, as always with ``steps_per_execution``.
    """

    def __init__(self):
        super().__init__()
        self._functions = None

    def on_train_begin(self, logs=None):
        steps = getattr(self.model, "steps_per_execution", 1)
        if steps < 2:
            raise ValueError("ForwardOverlap needs `model.compile(steps_per_execution=K)` "
                             f"with K >= 2, got steps_per_execution={steps}.")
        keras_function = self.model.train_function
        if self._functions is None or self._functions[0] is not keras_function:
            self._functions = (keras_function, overlap.make_train_function(self.model, steps))
        self._steps = steps
        if (self.params or {}).get("steps") is None:
            import warnings

            warnings.warn("ForwardOverlap: the number of steps per epoch is unknown, so "
                          "Keras' own train function is used (no forward overlap).",
                          stacklevel=2)

    def on_train_batch_begin(self, batch, logs=None):
        total = (self.params or {}).get("steps")
        full = total is not None and batch + self._steps <= total
        # Keras calls `model.train_function` right after this hook (documented trainer
        # attribute); swapping it is the one hook into Keras' fit loop.
        self.model.train_function = self._functions[1 if full else 0]

    def on_train_end(self, logs=None):
        self.model.train_function = self._functions[0]

    def get_config(self):
        return {}
