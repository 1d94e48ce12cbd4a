"""The restructured training step behind ``MemoryOptimizer``.

Stock Keras computes every weight gradient with one ``tape.gradient`` call and only then
applies the optimizer, so the weight gradients of all layers coexist (together with the
activations still waiting for their own backward step). This step walks the model's layer
graph from the last node to the first instead: for each node it computes the gradients of
its inputs (dX) and weights (dW) from the gradient of its outputs, in the order the plan
chose (the larger of dX and dW first, Shirahata et al., MLSP 2016), applies the layer's
update at once (``fuse_update``) so that its dW dies immediately, and makes the backward of
the node after next wait for that update, which keeps TensorFlow's executor from running
ahead and keeping gradients alive while one update still overlaps one node's backward.

The order is binding, not a hint: it is made of control edges, which TensorFlow's executor
obeys whatever ``inter_op_parallelism_threads`` is. Every op of a node's backward waits for
the update before the previous node's (a window of one update); an update waits for its
node's dX (so the forward read of W is dead and the variable is updated in place); a
dW-first node computes dX after dW; the row
blocks of an in-place update run one after the other (``inplace``); deferred updates wait
for the last node's backward. A large Dense kernel (the plan's ``dw_blocked``) never has its
whole weight gradient: dX first, then each row block of dW and its update
(``dense_blocks``). What stays parallel does not raise the peak: the forward
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

from keras_dlu.memory import dense_blocks, inplace
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


def _apply_without_increment(optimizer, grads, variables):
    """``optimizer.apply`` for a group of variables, without the iteration increment."""
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
                inplace.apply(optimizer, grads, variables)
            else:
                internals.backend_apply(optimizer, grads, variables)
            for variable in variables:
                if variable.constraint is not None:
                    variable.assign(variable.constraint(variable))
    return graph.get_operations()[first:]


def _group(ops_or_tensors):
    items = [t for t in ops_or_tensors if t is not None]
    return [tf.group(*items)] if items else []


def _sum(contributions):
    return contributions[0] if len(contributions) == 1 else tf.add_n(contributions)


class _Backward:
    """Per-node backward pass with fused per-layer updates.

    State of one traced pass: ``grads`` maps id(tensor) to the gradient contributions
    received so far, ``pending`` id(variable) to weight gradients not applied yet,
    ``deps`` the fused update before the last one (the next node's backward waits for it,
    so one layer's update overlaps the next node's backward and no more: a window of one
    gradient kept longer for the parallelism), ``last_update`` the last fused update,
    ``computed`` the gradients of the last node that had any, ``updates`` every update op.
    """

    def __init__(self, model, plan, fuse_update):
        self.model = model
        self.fuse_update = fuse_update
        self.order = {entry.name: entry.dw_first for entry in plan.layers}
        self.fused = {entry.name: entry.fused for entry in plan.layers}
        self.blocked = {e.name for e in plan.layers if e.dw_blocked and fuse_update}
        self.weights = {id(v): v for v in model.trainable_variables}

    def _node_weights(self, operation):
        return [v for v in operation.trainable_variables if id(v) in self.weights]

    def run(self, tape, loss, y_pred, records):
        """Node by node from the last: gradients, then the fused or deferred updates,
        then the iteration increment after every update."""
        self.grads, self.pending, self.computed, self.updates = {}, {}, [], []
        self.deps, self.last_update = [], []
        logits = self._seed(tape, loss, y_pred)
        remaining = {}  # a layer called by several nodes is applied after its last node
        for operation, _, _ in records:
            remaining[id(operation)] = remaining.get(id(operation), 0) + 1
        needs_input_grad = self._inputs_needing_grad(records)
        for operation, inputs, outputs in reversed(records):
            remaining[id(operation)] -= 1
            self._node(tape, operation, inputs, needs_input_grad,
                       self._output_seeds(outputs, logits),
                       last=remaining[id(operation)] == 0)
        self._apply_deferred()
        with tf.control_dependencies(self.updates):
            self.model.optimizer.iterations.assign_add(1)

    def _seed(self, tape, loss, y_pred):
        """The loss gradient at the outputs. Keras' crossentropy losses read a
        softmax/sigmoid output's logits (the tensor's ``_keras_logits``, made inside the
        last layer) instead of the output itself, so the loss gradient is seeded at both
        and the logits enter that layer's backward. Returns {id(output): logits}."""
        y_flat = tree.flatten(y_pred)
        logits = {id(y): internals.logits_of(y) for y in y_flat
                  if internals.logits_of(y) is not None}
        sources = y_flat + list(logits.values())
        for y, g in zip(sources, tape.gradient(loss, sources)):
            if g is not None:
                self.grads.setdefault(id(y), []).append(g)
        return logits

    def _output_seeds(self, outputs, logits):
        """``(targets, seeds)``: the node's outputs (and logits) that received gradients,
        and the sum of each one's contributions."""
        targets, seeds = [], []
        for out in outputs + [logits[id(o)] for o in outputs if id(o) in logits]:
            contributions = self.grads.pop(id(out), None)
            if contributions:
                targets.append(out)
                seeds.append(_sum(contributions))
        return targets, seeds

    def _node(self, tape, operation, inputs, needs_input_grad, targets_seeds, last):
        """One node's dX and dW (after the update before the previous one), then its
        update if due.

        ``inputs``: ``(tensor, the node's identity of it)`` per input."""
        targets, seeds = targets_seeds
        weights = self._node_weights(operation)
        pairs = [(t, c) for t, c in inputs if id(t) in needs_input_grad]
        dxs, rows = [], None
        if targets:
            with tf.control_dependencies(self.deps):
                if operation.name in self.blocked and last:
                    dx, dws, rows = dense_blocks.gradients(
                        tape, operation, inputs[0][1], targets, seeds, needs_dx=bool(pairs))
                    dxs = [dx] if pairs else []
                else:
                    dxs, dws = self._node_gradients(
                        tape, operation, targets, seeds, [c for _, c in pairs], weights)
            self.computed = [g for g in list(dxs) + list(dws) if g is not None]
            for (x, _), dx in zip(pairs, dxs):
                if dx is not None:
                    self.grads.setdefault(id(x), []).append(dx)
            for w, dw in zip(weights, dws):
                if dw is not None:
                    self.pending.setdefault(id(w), []).append(dw)
        if last and weights:
            self._update(operation, weights, dxs, rows)

    def _update(self, operation, weights, dxs, rows):
        """The layer's update now (fused: after its dX, so the forward read of W is dead
        and the variable is updated in place; the node after next waits for it), or later."""
        ready = [(w, self.pending.pop(id(w), None)) for w in weights]
        ready = [(w, _sum(g)) for w, g in ready if g]
        if not (ready or rows):
            return
        if not (self.fuse_update and self.fused.get(operation.name, True)):
            self.pending.update({id(w): [g] for w, g in ready})
            return
        optimizer = self.model.optimizer
        with tf.control_dependencies(_group(dxs)):
            updates = _apply_without_increment(
                optimizer, [g for _, g in ready], [w for w, _ in ready])
            if rows is not None:
                with tf.control_dependencies(_group(updates)):
                    updates = dense_blocks.apply(optimizer, operation.kernel, rows)
        self.deps, self.last_update = self.last_update, _group(updates)
        self.updates.extend(self.last_update)

    def _apply_deferred(self):
        """Deferred updates run at the end: after the last node's backward."""
        if not self.pending:
            return
        order = [v for v in self.model.trainable_variables if id(v) in self.pending]
        with tf.control_dependencies(self.last_update + _group(self.computed)):
            deferred = _apply_without_increment(
                self.model.optimizer, [self.pending[id(v)][0] for v in order], order)
        self.updates.extend(_group(deferred))

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
        buffers are as large as dX). A blocked Dense (the plan's ``dw_blocked``) goes
        through ``dense_blocks.gradients`` instead."""
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
