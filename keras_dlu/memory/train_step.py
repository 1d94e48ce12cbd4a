"""The restructured training step behind ``MemoryOptimizer``.

Stock Keras computes every weight gradient with one ``tape.gradient`` call and only then
applies the optimizer, so the weight gradients of all layers coexist (together with the
activations still waiting for their own backward step). This step walks the model's layer
graph from the last node to the first instead: for each node it computes the gradients of
its inputs (dX) and weights (dW) from the gradient of its outputs, in the order the plan
chose (the larger of dX and dW first, Shirahata et al., MLSP 2016), applies the layer's
update at once (``fuse_update``) so that its dW dies immediately, and makes the next node's
backward wait for that update, which keeps TensorFlow's executor from running ahead and
keeping gradients alive.

The order is binding, not a hint: it is made of control edges, which TensorFlow's executor
obeys whatever ``inter_op_parallelism_threads`` is. Every op of a node's backward waits for
the previous node's update; an update waits for its node's dX (so the forward read of W is
dead and the variable is updated in place); a dW-first node computes dX after dW; the row
blocks of an in-place update run one after the other (``inplace``); deferred updates wait
for the last node's backward. What stays parallel does not raise the peak: the forward
pass, dX and dW of a node computed by one gradient call when dX is the larger, each
kernel's intra-op threads, and the loss and metrics.

The optimizer update is the one stock ``optimizer.apply`` performs (clipping per variable,
weight decay, loss-scale factor, constraints), applied group by group; the iteration
counter is incremented once per step, after the last group, so learning-rate schedules and
Adam's bias correction see exactly the iteration stock ``fit`` gives them.
"""

import inspect

import keras
import tensorflow as tf
from keras import tree

from keras_dlu.memory import inplace
from keras_dlu.memory import keras_internals as internals
from keras_dlu.memory.keras_internals import layer_graph


def _forward(model, x):
    """Runs ``model(x, training=True)`` node by node, recording each node's tensors.

    Returns ``(y_pred, records)``; ``records`` lists ``(operation, inputs, outputs)`` with
    flat lists of the tensors each node received and produced, in execution order.
    """
    graph = layer_graph(model)
    records = []

    def operation_fn(operation):
        wrapped = internals.node_call(operation)

        def call(*args, **kwargs):
            # Each node reads its own identity of every input tensor, so the gradient
            # with respect to it covers this node's path only, not the other consumers
            # of the tensor (skip connections). Identities change no value.
            sources = []

            def own(t):
                if not tf.is_tensor(t):
                    return t
                copy = tf.identity(t)
                internals.copy_mask(t, copy)
                sources.append((t, copy))
                return copy

            args, kwargs = tree.map_structure(own, (args, kwargs))
            outputs = wrapped(*args, **kwargs)
            records.append((operation, sources, tree.flatten(outputs)))
            return outputs

        return call

    return internals.run_graph(graph, x, operation_fn), records


def _apply_without_increment(optimizer, grads, variables, owned=False):
    """``optimizer.apply`` for a group of variables, without the iteration increment.

    ``owned``: no other op reads the gradient tensors (see ``inplace.apply``)."""
    pairs = [(g, v) for g, v in zip(grads, variables) if g is not None]
    if not pairs:
        return []
    grads, variables = [list(t) for t in zip(*pairs)]
    graph = tf.compat.v1.get_default_graph()
    first = len(graph.get_operations())
    with keras.name_scope(optimizer.name, caller=optimizer):
        grads, variables = internals.overwrite_with_gradients(optimizer, grads, variables)
        if grads:
            scale = optimizer.loss_scale_factor
            if scale is not None:
                grads = [g / scale for g in grads]
            if inplace.supported(optimizer):
                inplace.apply(optimizer, grads, variables, owned=owned)
            else:
                internals.backend_apply(optimizer, grads, variables)
            for variable in variables:
                if variable.constraint is not None:
                    variable.assign(variable.constraint(variable))
    return graph.get_operations()[first:]


def _owned(dws, grads, seeds):
    """True when no dW tensor is also a dX, a seed or another variable's dW."""
    others = {id(t) for ts in grads.values() for t in ts} | {id(t) for t in seeds}
    ids = [id(g) for g in dws]
    return len(set(ids)) == len(ids) and not others.intersection(ids)


def _group(ops_or_tensors):
    items = [t for t in ops_or_tensors if t is not None]
    return [tf.group(*items)] if items else []


class _Backward:
    """Per-node backward pass with fused per-layer updates."""

    def __init__(self, model, plan, fuse_update):
        self.model = model
        self.fuse_update = fuse_update
        self.order = {entry.name: entry.dw_first for entry in plan.layers}
        self.fused = {entry.name: entry.fused for entry in plan.layers}
        self.weights = {id(v): v for v in model.trainable_variables}

    def _node_weights(self, operation):
        return [v for v in operation.trainable_variables if id(v) in self.weights]

    def run(self, tape, loss, y_pred, records):
        optimizer = self.model.optimizer
        grads = {}  # id(tensor) -> list of gradient contributions
        # Keras' crossentropy losses read a softmax/sigmoid output's logits (the tensor's
        # `_keras_logits`, made inside the last layer) instead of the output itself, so
        # the loss gradient is seeded at both and the logits enter that layer's backward.
        y_flat = tree.flatten(y_pred)
        logits = {id(y): internals.logits_of(y) for y in y_flat
                  if internals.logits_of(y) is not None}
        sources = y_flat + list(logits.values())
        for y, g in zip(sources, tape.gradient(loss, sources)):
            if g is not None:
                grads.setdefault(id(y), []).append(g)
        # A layer whose variables several nodes use is applied after its last node.
        remaining = {}
        for operation, _, _ in records:
            remaining[id(operation)] = remaining.get(id(operation), 0) + 1
        pending = {}  # id(variable) -> accumulated dW
        deps = []
        computed = []  # the gradients of the last node with any, for the deferred group
        all_updates = []
        needs_input_grad = self._inputs_needing_grad(records)
        for operation, inputs, outputs in reversed(records):
            targets, seeds = [], []
            for out in outputs + [logits[id(o)] for o in outputs if id(o) in logits]:
                contributions = grads.pop(id(out), None)
                if contributions:
                    targets.append(out)
                    seeds.append(
                        contributions[0]
                        if len(contributions) == 1
                        else tf.add_n(contributions)
                    )
            remaining[id(operation)] -= 1
            weights = self._node_weights(operation)
            pairs = [(t, c) for t, c in inputs if id(t) in needs_input_grad]
            xs = [c for _, c in pairs]
            if targets:
                with tf.control_dependencies(deps):
                    dxs, dws = self._node_gradients(
                        tape, operation, targets, seeds, xs, weights
                    )
                computed = [g for g in list(dxs) + list(dws) if g is not None]
                for (x, _), dx in zip(pairs, dxs):
                    if dx is not None:
                        grads.setdefault(id(x), []).append(dx)
                for w, dw in zip(weights, dws):
                    if dw is not None:
                        pending.setdefault(id(w), []).append(dw)
            if remaining[id(operation)] == 0 and weights:
                ready = [(w, pending.pop(id(w), None)) for w in weights]
                ready = [
                    (w, g[0] if len(g) == 1 else tf.add_n(g)) for w, g in ready if g
                ]
                if ready and self.fuse_update and self.fused.get(operation.name, True):
                    # The update waits for dX so the forward read of W is dead and the
                    # variable is updated in place; the next node waits for the update.
                    with tf.control_dependencies(_group(dxs) if targets else []):
                        updates = _apply_without_increment(
                            optimizer, [g for _, g in ready], [w for w, _ in ready],
                            owned=_owned([g for _, g in ready], grads, seeds),
                        )
                    deps = _group(updates)
                    all_updates.extend(deps)
                elif ready:
                    for w, g in ready:
                        pending[id(w)] = [g]
        if pending:
            # Deferred updates run at the end: after the last node's backward.
            order = [v for v in self.model.trainable_variables if id(v) in pending]
            with tf.control_dependencies(deps + _group(computed)):
                deferred = _apply_without_increment(
                    optimizer, [pending[id(v)][0] for v in order], order,
                    owned=_owned([pending[id(v)][0] for v in order], grads, []),
                )
            all_updates.extend(_group(deferred))
        with tf.control_dependencies(all_updates):
            optimizer.iterations.assign_add(1)

    def _inputs_needing_grad(self, records):
        """Ids of recorded tensors that depend on a trainable variable."""
        needed = set()
        for operation, inputs, outputs in records:
            if self._node_weights(operation) or any(id(t) in needed for t, _ in inputs):
                needed.update(id(t) for t in outputs)
        return needed

    def _node_gradients(self, tape, operation, targets, seeds, xs, weights):
        """dX and dW of one node. When dW is the larger (the plan's ``dw_first``) it is
        computed by its own gradient call and dX waits for it; otherwise one call
        computes both (dX first would only duplicate the layer's inner gradients, whose
        buffers are as large as dX)."""
        if xs and weights and self.order.get(operation.name, False):
            dws = tape.gradient(targets, weights, output_gradients=seeds)
            with tf.control_dependencies(_group(dws)):
                dxs = tape.gradient(targets, xs, output_gradients=seeds)
            return dxs, dws
        grads = tape.gradient(targets, xs + weights, output_gradients=seeds)
        return grads[: len(xs)], grads[len(xs):]


def _compute_loss(model, x, y, y_pred, sample_weight):
    """``Model.compute_loss`` as stock train_step calls it (``training`` where taken)."""
    if "training" in inspect.signature(model.compute_loss).parameters:
        return model.compute_loss(x, y, y_pred, sample_weight, training=True)
    return model.compute_loss(x, y, y_pred, sample_weight)


def make_train_step(model, plan, fuse_update=True):
    """Returns a ``train_step(data)`` equivalent to ``model.train_step`` (same logs and
    the same updated weights) with the restructured backward pass described above.

    Args:
        model: a compiled Functional or Sequential Keras model (TensorFlow backend).
        plan: the ``MemoryPlan`` of ``keras_dlu.memory.plan(model, batch_size)``, or a
            callable ``plan(batch_size)`` called when the step is traced with the batch
            size of the traced batch (None when it is not static).
        fuse_update: apply each layer's update as soon as its gradient exists
            (default True); with False the updates are applied together at the end.
    """
    def train_step(data):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        the_plan = plan
        if callable(plan):
            first = next(i for i in tree.flatten(x) if i is not None)
            the_plan = plan(first.shape[0] if first.shape.rank else None)
        backward = _Backward(model, the_plan, fuse_update)
        with tf.GradientTape(persistent=True) as tape:
            y_pred, records = _forward(model, x)
            loss = _compute_loss(model, x, y, y_pred, sample_weight)
            # Stock unscales the loss for tf.distribute; without a strategy (the
            # restructured step is never used under one) that is the identity.
            internals.loss_tracker(model).update_state(
                loss,
                sample_weight=tf.shape(
                    next(i for i in tree.flatten(x) if i is not None)
                )[0],
            )
            loss = model.optimizer.scale_loss(loss)
        if model.losses:
            raise RuntimeError(
                "MemoryOptimizer: the model added losses during the forward pass "
                "(regularizers); this should have been caught before training."
            )
        backward.run(tape, loss, y_pred, records)
        del tape
        return model.compute_metrics(x, y, y_pred, sample_weight=sample_weight)

    return train_step
