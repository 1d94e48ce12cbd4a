"""The sharpest curvature of the loss, measured by power iteration on gradient differences.

Proxtone bounds its steps by ``L``, an estimate of the largest curvature (the largest
eigenvalue magnitude of the Hessian). Curvature pairs see only the directions the steps
have taken, so before and between them ``L`` is measured here: at each new snapshot the
train-step hook (``keras_dlu.optimizers._reference_gradient``) runs a few steps of power
iteration on the batch Hessian ``H`` at the snapshot, each Hessian-vector product a
gradient difference on the same batch, ``H u ~ (g_B(w + eps u) - g_B(w)) / eps``. The
direction ``u`` is kept between snapshots (warm start), so the estimate follows the
sharpest direction as the weights move. ``|H u|`` for a unit ``u`` never exceeds the
largest eigenvalue magnitude and approaches it as the iteration converges (Golub and Van
Loan, "Matrix Computations", 7.3.1; Hessian power iteration as in Yao et al., "PyHessian",
2020).
"""

from keras import ops

from keras_dlu.optimizers._vectors import dot

# Power-iteration steps at each snapshot (each one gradient of the batch).
POWER_ITERATIONS = 3
# Length of the finite-difference step, relative to ``1 + |w|``.
PROBE_STEP = 1e-3


def normalized(vectors):
    """``vectors / |vectors|`` (a list of tensors; unchanged when the norm is 0)."""
    norm = ops.sqrt(dot(vectors, vectors))
    inverse = ops.where(ops.greater(norm, 0.0), 1.0 / ops.maximum(norm, 1e-30), 1.0)
    return [inverse * v for v in vectors]


def power_iteration(gradient_at, point, gradient, direction, iterations=POWER_ITERATIONS):
    """Power iteration on the Hessian at ``point`` from ``direction``.

    Args:
        gradient_at: function of a list of tensors (the weights) giving the gradient there.
        point: the weights (list of float32 tensors).
        gradient: ``gradient_at(point)``, already computed.
        direction: the start vector (list like ``point``, any non-zero norm).
        iterations: Hessian-vector products to make (>= 1).

    Returns:
        ``(unit, estimate)``: the unit vector ``H^k u / |H^k u|`` and ``|H u_k|``, ``u_k``
        the last unit vector the Hessian was applied to (a lower estimate of the largest
        eigenvalue magnitude).
    """
    step = PROBE_STEP * (1.0 + ops.sqrt(dot(point, point)))
    estimate = ops.zeros((), "float32")
    for _ in range(iterations):
        unit = normalized(direction)
        moved = gradient_at([w + step * u for w, u in zip(point, unit)])
        direction = [(m - g) / step for m, g in zip(moved, gradient)]
        estimate = ops.sqrt(dot(direction, direction))
    return normalized(direction), estimate
