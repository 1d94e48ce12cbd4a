"""Static analysis of a model's backward pass: the per-layer plan of ``MemoryOptimizer``.

For each node of the model's layer graph (in forward order) the planner computes, for the
batch size in use, the bytes of its output activation, of its input gradient dX and of its
weight gradient dW, and decides which of the two is computed first: the larger one, so its
lifetime can end as early as possible (Shirahata et al., "Memory reduction method for deep
neural network training", MLSP 2016). It also predicts the backward pass's peak (bytes
above the resident weights and optimizer state) for stock Keras, where every dW lives
until the single optimizer update at the end, and for the fused order, where a layer's dW
dies as soon as its update is applied. The prediction is a model of the allocator, not a
measurement; ``keras_dlu.memory.measure_step_peak`` measures.
"""

import dataclasses
import functools
import warnings

import numpy as np

from keras_dlu.memory import dense_blocks, inplace
from keras_dlu.memory.keras_internals import layer_graph, nodes_by_depth
from keras_dlu.utils.quiet import ALLOCATOR_STATS_ENV


@dataclasses.dataclass(frozen=True)
class LayerPlan:
    """One node of the backward plan.

    Attributes:
        name: the layer's name.
        activation_bytes: bytes of the node's outputs for the planned batch.
        dx_bytes: bytes of the gradients of the node's inputs (0 for the first layer).
        dw_bytes: bytes of the gradients of the node's trainable weights.
        dw_first: True when dW is computed before dX (dW is the larger).
        fused: True when the layer's update is applied as soon as its gradients exist;
            False when the plan defers it to the end of the step (where the update's
            temporaries cost less than they would on top of the live activations).
        dw_blocked: True when the kernel's gradient is computed in row blocks, each
            applied in place at once (``keras_dlu.memory.dense_blocks``): dX first, and
            at most one block of dW exists.
    """

    name: str
    activation_bytes: int
    dx_bytes: int
    dw_bytes: int
    dw_first: bool
    fused: bool = True
    dw_blocked: bool = False

    def live_dw_bytes(self, block_bytes):
        """Bytes of this node's weight gradient alive at once."""
        return min(self.dw_bytes, block_bytes) if self.dw_blocked else self.dw_bytes


@dataclasses.dataclass(frozen=True)
class MemoryPlan:
    """The analysis ``plan(model, batch_size)`` returns.

    Attributes:
        batch_size: the batch size the sizes are computed for.
        layers: ``LayerPlan`` per node, in forward order.
        predicted_stock_bytes: predicted backward peak of stock ``fit``.
        predicted_optimized_bytes: predicted backward peak with the planned updates.
        update_factor: temporaries of one optimizer update, in multiples of the
            variable's bytes (measured on a probe variable, or given).
        update_block_bytes: None when an update's temporaries scale with the whole
            variable (Keras' own ``update_step``), or the block size of the in-place
            update (``keras_dlu.memory.inplace``), which bounds them.
        optimizer_name: the class name of the planned optimizer, or None.
    """

    batch_size: int
    layers: tuple
    predicted_stock_bytes: int
    predicted_optimized_bytes: int
    update_factor: float = 1.0
    update_block_bytes: int = None
    optimizer_name: str = None

    @property
    def predicted_reduction(self):
        """1 - optimized/stock of the predicted peaks."""
        if not self.predicted_stock_bytes:
            return 0.0
        return 1.0 - self.predicted_optimized_bytes / self.predicted_stock_bytes

    def summary(self):
        """A printable table of the plan."""
        mib = 1 / 2**20
        lines = [
            f"MemoryOptimizer plan (batch {self.batch_size}, backward from the last layer):",
            f"  {'layer':<24}{'activation MiB':>16}{'dX MiB':>10}{'dW MiB':>10}  order",
        ]
        for entry in reversed(self.layers):
            order = "dW, dX" if entry.dw_first else "dX, dW"
            if entry.dw_blocked:
                order = "dX, dW in row blocks, each updated at once"
            elif not entry.dw_bytes:
                order = "dX"
            elif entry.fused:
                order += ", update"
            else:
                order += " (update deferred)"
            lines.append(
                f"  {entry.name:<24}{entry.activation_bytes * mib:>16.2f}"
                f"{entry.dx_bytes * mib:>10.2f}{entry.dw_bytes * mib:>10.2f}  {order}"
            )
        lines.append("  " + self._update_cost())
        lines.append(
            f"  predicted peak above resident: stock {self.predicted_stock_bytes * mib:.2f} "
            f"MiB, optimized {self.predicted_optimized_bytes * mib:.2f} MiB "
            f"({100 * self.predicted_reduction:.1f}% less)"
        )
        return "\n".join(lines)


    def _update_cost(self):
        name = self.optimizer_name or "the optimizer"
        if self.update_block_bytes:
            return (f"{name} update: in place, bit for bit with Keras, temporaries "
                    f"{self.update_factor:.1f}x a block of at most "
                    f"{self.update_block_bytes / 2**10:.0f} KiB per variable")
        largest = max([e.dw_bytes for e in self.layers], default=0)
        return (f"{name} update: Keras' own update_step, temporaries "
                f"{self.update_factor:.1f}x each variable (largest "
                f"{self.update_factor * largest / 2**20:.2f} MiB); in-place updates: "
                "SGD, Adam, AdamW (no AMSGrad), RMSprop")


def _bytes(tensors, batch_size):
    total = 0
    for t in tensors:
        shape = [batch_size if d is None else d for d in t.shape]
        total += int(np.prod(shape, dtype=np.int64)) * np.dtype(t.dtype).itemsize
    return total


def plan(model, batch_size, optimizer=None, update_factor=None, fuse_update=True):
    """Analyses ``model``'s backward pass for ``batch_size`` without training.

    Args:
        model: a built Functional or Sequential Keras model.
        batch_size: positive int, the batch size of the planned training.
        optimizer: the optimizer whose update temporaries are measured when
            ``update_factor`` is None (default: the model's, if compiled).
        update_factor: None (default) or a float >= 0: the bytes of temporaries one
            update allocates, per byte of the variable. None measures it with
            TensorFlow's allocator on a probe variable (this resets the CPU allocator's
            peak statistic) or, without an optimizer, uses 1.0.
        fuse_update: bool, default True; False plans ``MemoryOptimizer(fuse_update=False)``:
            every update deferred to the end of the step, no row blocks.

    Returns:
        A ``MemoryPlan``.

    Raises:
        ValueError: ``batch_size`` is not a positive int, or the model has no layer graph
            (a subclassed model, or a Sequential that was never built).
    """
    _check_arguments(batch_size, update_factor)
    if not isinstance(fuse_update, bool):
        raise ValueError(f"fuse_update must be True or False; received {fuse_update!r}.")
    graph = layer_graph(model)
    if graph is None:
        raise ValueError(
            "model must be a built Functional or Sequential model (a layer graph to plan); "
            f"received {type(model).__name__}."
        )
    batch_size = int(batch_size)
    optimizer = optimizer if optimizer is not None else getattr(model, "optimizer", None)
    if update_factor is None:
        update_factor = 1.0 if optimizer is None else measure_update_factor(optimizer)
    block = inplace.BLOCK_BYTES if optimizer is not None and inplace.supported(
        optimizer) else None
    cost = _UpdateCost(float(update_factor), block)
    eager = bool(getattr(model, "run_eagerly", False))
    entries = _layer_entries(graph, model, batch_size, optimizer, eager)
    inputs = _bytes(graph.inputs, batch_size)
    fused, stock, best = _choose_fused(entries, inputs, cost)
    if not fuse_update:
        fused, best = [False] * len(entries), stock
    entries = tuple(dataclasses.replace(e, fused=f, dw_blocked=e.dw_blocked and f)
                    for e, f in zip(entries, fused))
    return MemoryPlan(batch_size, entries, stock, best, float(update_factor), block,
                      type(optimizer).__name__ if optimizer is not None else None)


def _check_arguments(batch_size, update_factor):
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or (
        batch_size < 1
    ):
        raise ValueError(f"batch_size must be a positive int; received {batch_size!r}.")
    if update_factor is not None and (
        isinstance(update_factor, bool)
        or not isinstance(update_factor, (int, float))
        or update_factor < 0
    ):
        raise ValueError(
            f"update_factor must be None or a number >= 0; received {update_factor!r}."
        )


def _layer_entries(graph, model, batch_size, optimizer=None, eager=False):
    """One ``LayerPlan`` per node of the backward pass, last layer first."""
    trainable = {id(v) for v in model.trainable_variables}
    depends = set()
    entries = []
    by_depth = nodes_by_depth(graph)
    calls = {}
    for nodes in by_depth.values():
        for node in nodes:
            calls[id(node.operation)] = calls.get(id(node.operation), 0) + 1
    for depth in sorted(by_depth, reverse=True):
        for node in by_depth[depth]:
            if not node.operation or node.is_input:
                continue
            weights = [
                v for v in node.operation.trainable_variables if id(v) in trainable
            ]
            needs_dx = [t for t in node.input_tensors if id(t) in depends]
            if weights or needs_dx:
                depends.update(id(t) for t in node.outputs)
            dw = sum(int(np.prod(v.shape)) * np.dtype(v.dtype).itemsize for v in weights)
            dx = _bytes(needs_dx, batch_size)
            entries.append(
                LayerPlan(
                    name=node.operation.name,
                    activation_bytes=_bytes(node.outputs, batch_size),
                    dx_bytes=dx,
                    dw_bytes=dw,
                    dw_first=dw >= dx,
                    dw_blocked=dense_blocks.blockable(
                        node.operation, node.input_tensors, optimizer,
                        calls[id(node.operation)], eager),
                )
            )
    return entries


def _choose_fused(entries, inputs, cost):
    """Which layers update right after their backward: ``(fused, stock peak, best peak)``."""
    fused = [e.dw_bytes > 0 for e in entries]
    stock = _peak(entries, inputs, [False] * len(entries), _UpdateCost(cost.factor, None))
    best = _peak(entries, inputs, fused, cost)
    improved = True
    while improved:  # greedily defer the update that lowers the predicted peak most
        improved = False
        for i in [i for i, f in enumerate(fused) if f and not entries[i].dw_blocked]:
            trial = list(fused)
            trial[i] = False
            peak = _peak(entries, inputs, trial, cost)
            if peak < best:
                best, candidate, improved = peak, trial, True
        if improved:
            fused = candidate
    if stock <= best:  # deferring everything is the stock schedule
        fused, best = [False] * len(entries), stock
    return fused, stock, best


@dataclasses.dataclass(frozen=True)
class _UpdateCost:
    """Temporaries of one update: ``factor`` times the variable, or times one block."""

    factor: float
    block_bytes: int = None

    def __call__(self, variable_bytes):
        if self.block_bytes:
            variable_bytes = min(variable_bytes, self.block_bytes)
        return self.factor * variable_bytes


def _peak(entries, inputs, fused, cost):
    """Predicted peak of (live activations + dY + dX + live dW + update temporaries).

    Stock Keras applies Keras' own update to whole variables (``cost`` without blocks)."""
    peak = 0
    deferred = 0
    for i in range(len(entries) - 1, -1, -1):
        e = entries[i]
        live = inputs + sum(x.activation_bytes for x in entries[: i + 1])
        dw = e.live_dw_bytes(cost.block_bytes) if fused[i] and cost.block_bytes else (
            e.dw_bytes)
        step = live + e.activation_bytes + e.dx_bytes + deferred + dw
        if fused[i]:
            step += cost(dw)
        else:
            deferred += e.dw_bytes
        peak = max(peak, step)
    biggest = max([e.dw_bytes for e, f in zip(entries, fused) if not f], default=0)
    return int(max(peak, deferred + cost(biggest)))


UNMEASURED_UPDATE_FACTOR = 3.0
"""The update factor assumed where the allocator keeps no statistics: the largest measured
for Keras' own optimizers (SGD 0, Adagrad 1, Adam, Nadam and RMSprop 2, AdamW and Lion 3)."""


def measure_update_factor(optimizer, elements=inplace.BLOCK_BYTES // 4):
    """Bytes of temporaries of one ``optimizer`` update per byte of the variable.

    Measured with TensorFlow's allocator on a copy of the optimizer updating a probe
    float32 variable of ``elements`` values from a gradient that dies in the update (as
    in the fused step, where TensorFlow may reuse the gradient's buffer), with the update
    the fused step applies (in place for plain SGD, ``keras_dlu.memory.inplace``): the
    peak above the resident memory, less the gradient's own bytes. Where the allocator
    keeps no statistics (``keras_dlu.memory.allocator``), warns once and returns
    ``UNMEASURED_UPDATE_FACTOR``.
    """
    import keras
    import tensorflow as tf

    from keras_dlu.memory import allocator

    if not allocator.stats_available("CPU:0"):
        _warn_unmeasured()
        return UNMEASURED_UPDATE_FACTOR

    clone = type(optimizer).from_config(optimizer.get_config())
    variable = keras.Variable(np.zeros(elements, "float32"), name="probe")
    clone.build([variable])

    @tf.function
    def step(value):
        grad = tf.fill([elements], value)
        if inplace.supported(clone):  # the fused step's path for this optimizer
            inplace.apply(clone, [grad], [variable])
        else:
            clone.apply([grad], [variable])

    step(tf.constant(1e-3))
    peak, _ = allocator.peak_above_current(lambda: step(tf.constant(1e-3)), "CPU:0")
    return max(0.0, peak / (4.0 * elements) - 1.0)


@functools.cache
def _warn_unmeasured():
    variable, value = ALLOCATOR_STATS_ENV
    warnings.warn(
        "keras_dlu.memory: TensorFlow's CPU allocator keeps no statistics in this process "
        f"(oneDNN is off on this CPU), so the optimizer's update temporaries are assumed "
        f"to be {UNMEASURED_UPDATE_FACTOR}x the variable instead of measured; set "
        f"{variable}={value} before importing TensorFlow to measure them.", stacklevel=3)
