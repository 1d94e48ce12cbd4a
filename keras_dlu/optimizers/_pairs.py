"""Curvature pairs of PROXTONE from block averages, and the bookkeeping of their Gram matrix.

A single mini-batch pair ``y = g_t(x_t) - g_{t-1}(x_{t-1})`` mixes two batches, so its noise
is as large as the gradient noise while its signal ``H s`` is one tiny step long. Here the
gradients and iterates of ``pair_interval`` consecutive steps are averaged first (the
averaged-iterate idea of SQN, Byrd, Hansen, Nocedal and Singer 2016):
``s = mean(x over block k) - mean(x over block k-1)``, ``y = mean(g over block k) -
mean(g over block k-1)``. For a quadratic ``y = H s`` plus noise whose variance is
``pair_interval`` times smaller, while ``s`` is ``pair_interval`` steps long.

The functions here work on the small ``[2m, 2m]`` matrices only (``m`` pairs kept).
"""

from keras import ops


def accept_pair(has_previous, s_dot_s, s_dot_y, y_dot_y, min_cosine, finite):
    """Whether a new pair enters the memory: a previous block exists, ``cos(s, y)`` is
    above ``min_cosine`` (noise-dominated or negative-curvature pairs are dropped), ``s``
    is not zero and every inner product is finite."""
    cosine_ok = ops.greater(s_dot_y, min_cosine * ops.sqrt(s_dot_s * y_dot_y))
    accept = ops.logical_and(has_previous, cosine_ok)
    accept = ops.logical_and(accept, ops.greater(s_dot_s, 0.0))
    return ops.logical_and(accept, finite)


def replace_slot(gram, slot_mask, memory_dots, s_dot_s, s_dot_y, y_dot_y):
    """The Gram matrix of ``[S; Y]`` after the pair ``(s, y)`` replaced slot ``slot_mask``.

    Args:
        gram: ``[2m, 2m]`` inner products of the stored ``[S; Y]`` rows.
        slot_mask: ``[m]`` bool, true at the slot being replaced (all false: no change).
        memory_dots: ``[2m, 2]`` inner products of the stored rows with ``s`` and ``y``.
        s_dot_s, s_dot_y, y_dot_y: scalars of the new pair.

    Returns:
        The ``[2m, 2m]`` Gram matrix with the slot's row and column of ``S`` and of ``Y``
        rewritten.
    """
    m = ops.shape(slot_mask)[0]
    none = ops.zeros((m,), "bool")
    is_s = ops.concatenate([slot_mask, none])
    is_y = ops.concatenate([none, slot_mask])
    row_s = ops.where(is_s, s_dot_s, ops.where(is_y, s_dot_y, memory_dots[:, 0]))
    row_y = ops.where(is_s, s_dot_y, ops.where(is_y, y_dot_y, memory_dots[:, 1]))
    gram = ops.where(is_s[:, None], row_s[None, :], gram)
    gram = ops.where(is_s[None, :], row_s[:, None], gram)
    gram = ops.where(is_y[:, None], row_y[None, :], gram)
    return ops.where(is_y[None, :], row_y[:, None], gram)


def largest_curvature(pair_curvatures, stamps, floor):
    """``max(floor, y'y / s'y over the stored pairs)``: the curvature that bounds the steps.

    ``y'y / s'y`` estimates the largest curvature along a pair (noise only raises it); the
    ``floor`` (``initial_curvature``) keeps steps no longer than the first ones, which
    matters on non-convex losses, where averaged pairs can see almost no curvature.
    """
    valid = ops.greater_equal(stamps, 0.0)
    return ops.maximum(ops.max(ops.where(valid, pair_curvatures, 0.0)), floor)


def noise_step_scale(signal, variance, noise_scale):
    """``signal / (signal + noise_scale * variance)``: the share of a step that is signal.

    ``signal`` is the squared norm of the block-mean pseudo-gradient, ``variance`` the
    block's per-step gradient variance (``mean |g|^2 - |mean g|^2``). Far from a minimiser
    the gradient dominates and the scale is about 1; near one the noise dominates and the
    steps shrink with it, which is what lets a mini-batch method converge instead of
    hovering at a noise floor. ``noise_scale = 0`` always gives 1.
    """
    denominator = signal + noise_scale * ops.maximum(variance, 0.0)
    return ops.where(ops.greater(denominator, 0.0), signal / ops.maximum(denominator, 1e-30),
                     1.0)
