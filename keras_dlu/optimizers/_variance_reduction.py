"""The variance-reduced gradient of Proxtone: SVRG against a snapshot, without full passes.

The snapshot ``w_snap`` is a copy of the weights, refreshed every ``snapshot_interval``
steps. Each step sees the batch gradient ``g = g_B(w)`` and the same batch's gradient at
the snapshot, ``h = g_B(w_snap)`` (``keras_dlu.optimizers._reference_gradient``). SVRG
(Johnson and Zhang 2013; proximal: Xiao and Zhang 2014) steps along
``v = g - h + mu``, ``mu`` the full gradient at the snapshot; here ``mu`` is the running
mean of ``h`` over the steps since the snapshot was taken, so no extra pass over the data is
made: at the first step of a cycle ``v = g``, and as the mean covers more batches ``v``
approaches the SVRG direction, whose noise vanishes as ``w`` and ``w_snap`` approach the
minimiser. ``(w - w_snap, g - h)`` is a curvature pair measured on one batch (no
between-batch noise, the oLBFGS idea of Schraudolph, Yu and Guenter 2007).
"""

from keras import ops


def accumulate(reference_sums, references, count, weight):
    """The snapshot's gradient sums and count with this step's ``h`` added ``weight`` times
    (0 for a skipped step)."""
    return ([total + weight * h for total, h in zip(reference_sums, references)],
            count + weight)


def direction(gradients, references, reference_sums, count):
    """``v = g - h + sum(h) / count`` per variable (``v = g`` while ``count`` is 0)."""
    inverse = 1.0 / ops.maximum(count, 1.0)
    return [g - h + inverse * total
            for g, h, total in zip(gradients, references, reference_sums)]


def curvature_pair(values, gradients, snapshot, references):
    """The same-batch pair ``s = w - w_snap``, ``y = g_B(w) - g_B(w_snap)``."""
    return ([x - w for x, w in zip(values, snapshot)],
            [g - h for g, h in zip(gradients, references)])
