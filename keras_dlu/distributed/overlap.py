"""Forward overlap: the next steps' forward passes run while this step's gradients travel.

Technique 2 of Fujitsu's overlapped allreduce (Yamazaki et al. 2016): layer ``l``'s update
only has to land before layer ``l``'s forward pass in the next step, not before the next
step starts. Keras runs each step as its own function call (``steps_per_execution`` loops
over such calls), and a call ends only when every update of its step has landed, so the
next forward pass always waits for the last gradient. :func:`make_train_function` traces
``steps`` consecutive ``train_step`` calls into ONE graph instead: there the only
orderings between steps are TensorFlow's per-variable ones (a read of a variable follows
its last write, a write follows its last reads), so step ``t+1``'s first layers run as
soon as their own, small buckets of step ``t`` are averaged and applied, while the large
buckets of the last layers are still on the wire. Each step reads exactly the weights a
one-step-at-a-time run would read, so the result is the same, bit for bit in principle and
within float rounding in practice.
"""

import tensorflow as tf


def make_train_function(model, steps):
    """A Keras ``train_function`` that runs ``steps`` train steps in one traced graph.

    Args:
        model: a compiled Keras 3 model (TensorFlow backend).
        steps: train steps per call (>= 2); the iterator must hold at least that many
            batches (:class:`keras_dlu.callbacks.ForwardOverlap` calls it only then).

    Returns:
        ``function(iterator) -> logs`` (the last step's logs), as Keras' own.
    """
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 2:
        raise ValueError(f"`steps` must be an integer >= 2, got {steps!r}.")

    @tf.function(reduce_retracing=True)
    def train_function(iterator):
        logs = None
        for _ in range(steps):  # unrolled: one graph, per-variable ordering only
            logs = model.train_step(iterator.get_next())
        return logs

    return train_function
