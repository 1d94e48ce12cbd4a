"""Proxtone's step safeguard with the hook: a trust-region shift and the batch-noise share.

With the reference-gradient hook Proxtone solves its quadratic model with the eigenvalues
shifted, ``B + shift * I`` (Levenberg-Marquardt), instead of flooring them at the largest
curvature seen. The shift follows the ratio ``rho`` of the objective change of the last
step to the change its model predicted (the classic trust-region rule, Nocedal and Wright,
"Numerical Optimization", 4.1): below ``SHRINK_BELOW`` the shift grows ``GROW`` times,
above ``GROW_ABOVE`` it falls ``SHRINK`` times. The objective change is measured without a
loss value, from the directional derivatives at both ends of the step (trapezoid rule,
exact for a quadratic): ``(v_prev'd + v'd) / 2 + l1 * (|x|_1 - |x_prev|_1)``. The model
change is ``v_prev'd - p'd/2 + l1 * (|x|_1 - |x_prev|_1)`` (``p'd/2`` is the model's
quadratic term at its minimiser along ``d``).

With exact gradients (full batch) this is a quasi-Newton method with a trust-region
safeguard, whose steps approach Newton steps. Mini-batch gradients make ``rho`` noise, so
the floor of the model's eigenvalues of the earlier design stays, weighted by
``q ** FLOOR_EXPONENT``, ``q = n / (n + |p(mean h)|^2)`` the batch-noise share: ``n`` the
variance of the snapshot gradients ``h = g_B(w_snap)`` between batches (pure sampling
noise: the point is fixed; 0 with one batch), ``p(mean h)`` the pseudo-gradient of their
mean. With ``q`` below
``EXACT_SHARE`` the gradients count as exact, and each step also offers the pair of
consecutive steps ``(x - x_prev, v - v_prev)`` (the classic L-BFGS pair).

Everything here works on scalars or on lists of tensors (``keras.ops`` only).
"""

from keras import ops

from keras_dlu.optimizers._vectors import dot

SHRINK_BELOW, GROW_ABOVE = 0.25, 0.75
GROW, SHRINK = 4.0, 0.5
# The shift stays in [LEAST_SHIFT, MOST_SHIFT] times the step bound L.
LEAST_SHIFT, MOST_SHIFT = 1e-6, 1e3
# Batch-noise share below which the gradients are taken as exact (consecutive pairs).
EXACT_SHARE = 1e-3
# The eigenvalue floor is weighted by q ** FLOOR_EXPONENT. Measured (seed 0, digits L1
# softmax regression, batch 128, 30 epochs, gap to FISTA at l1=1e-3 / 1e-2): exponent 1:
# 26.6% / 0.22%; 0.5: 4.7% / 0.22%; 0.35: 4.4% / 0.21%; 0.25: 3.9% / 0.22%; the full floor
# whenever q >= EXACT_SHARE: 8.1% / 0.24% (the floor alone, before: 8.5% / 0.23%).
FLOOR_EXPONENT = 0.25


def step_ratio(slope_before, slope_after, model_change, l1_change):
    """``rho``: the objective change of the last step (trapezoid rule on its directional
    derivatives ``slope_before = v_prev'd``, ``slope_after = v'd``, plus the L1 change)
    over the model's predicted change; ``-1`` when the model predicted no decrease."""
    actual = 0.5 * (slope_before + slope_after) + l1_change
    decrease = ops.less(model_change, 0.0)
    return ops.where(decrease, actual / ops.where(decrease, model_change, -1.0), -1.0)


def updated_shift(shift, rho, bound):
    """The trust-region rule on the shift, kept in ``[LEAST_SHIFT, MOST_SHIFT] * bound``."""
    new = ops.where(ops.less(rho, SHRINK_BELOW), GROW * shift,
                    ops.where(ops.greater(rho, GROW_ABOVE), SHRINK * shift, shift))
    return ops.clip(new, LEAST_SHIFT * bound, MOST_SHIFT * bound)


def welford(square_sum, sums, count, references, weight):
    """The sum of squared deviations of the snapshot gradients after adding ``references``
    (``weight`` 0 or 1), with ``sums`` and ``count`` before it (Welford's update:
    ``M2 += |h - mean|^2 * count / (count + 1)``, exact when every ``h`` is the same)."""
    inverse = 1.0 / ops.maximum(count, 1.0)
    deviation = [h - inverse * total for h, total in zip(references, sums)]
    gain = weight * ops.where(ops.greater(count, 0.0), count / (count + 1.0), 0.0)
    return square_sum + gain * dot(deviation, deviation)


def noise_share(square_sum, count, signal):
    """``q = n / (n + signal)``, ``n = square_sum / (count - 1)`` the between-batch variance
    of the snapshot gradients, ``signal`` the squared norm of their mean's pseudo-gradient;
    ``None``-like ``-1`` while fewer than two batches were seen."""
    variance = square_sum / ops.maximum(count - 1.0, 1.0)
    total = variance + signal
    share = ops.where(ops.greater(total, 0.0), variance / ops.maximum(total, 1e-30), 0.0)
    return ops.where(ops.greater_equal(count, 2.0), share, -1.0)


def noise_weight(share):
    """``q ** FLOOR_EXPONENT`` (0 for exact gradients, 1 where noise dominates)."""
    return ops.power(ops.maximum(share, 0.0), FLOOR_EXPONENT)


def model_change(slope, pseudo_slope, l1_change):
    """The model's predicted change along the step ``d``: ``v'd - p'd/2 + l1 change``."""
    return slope - 0.5 * pseudo_slope + l1_change
