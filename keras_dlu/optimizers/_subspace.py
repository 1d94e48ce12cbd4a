"""The small dense solve of PROXTONE: the L-BFGS quadratic model restricted to a subspace.

Everything here works on ``(2m+1)``-sized matrices (``m`` = curvature pairs kept), never
on parameter-sized vectors, so its cost does not grow with the model.
"""

from keras import ops


def subspace_direction(gram, s_dot_p, y_dot_p, p_dot_p, stamps, curvature, floor,
                       shift=0.0):
    """Coefficients of ``d = -B^{-1} p`` in the basis ``V = [S, Y, p]``.

    ``B`` is the L-BFGS approximation built from the stored pairs with initial matrix
    ``curvature * I`` (compact form of Byrd, Nocedal and Schnabel, 1994). Since
    ``B^{-1} p`` lies in ``span(S, Y, p)``, minimising ``p'd + d'Bd/2`` over that span is
    exact (also for ``B + shift * I``); it is done in an orthonormal basis of the span
    (eigenvectors of the Gram matrix), with the model's eigenvalues shifted by ``shift``
    and floored at ``floor`` (damping).

    Args:
        gram: ``[2m, 2m]`` inner products of ``[S, Y]`` (slot order).
        s_dot_p, y_dot_p: ``[m]`` inner products of the stored ``s`` and ``y`` with ``p``.
        p_dot_p: scalar ``p'p``.
        stamps: ``[m]`` insertion counter of each slot, ``-1`` when empty.
        curvature: the scalar ``sigma`` of ``B0 = sigma * I``.
        floor: smallest eigenvalue allowed for the projected model.
        shift: added to every eigenvalue of the projected model before the floor (the
            model of ``B + shift * I``; a trust-region shift).

    Returns:
        ``(a_s, a_y, a_p)``: ``[m]``, ``[m]`` and scalar, in float64.
    """
    dtype = "float64"
    gram = ops.cast(gram, dtype)
    m = ops.shape(stamps)[0]
    stamps = ops.cast(stamps, dtype)
    valid = ops.greater_equal(stamps, 0.0)
    valid_f = ops.cast(valid, dtype)
    sigma = ops.cast(curvature, dtype)
    pair_mask = ops.concatenate([valid_f, valid_f])
    gram = gram * pair_mask[:, None] * pair_mask[None, :]
    vp = ops.concatenate([ops.cast(s_dot_p, dtype), ops.cast(y_dot_p, dtype)]) * pair_mask
    pp = ops.reshape(ops.cast(p_dot_p, dtype), (1, 1))
    g_full = ops.concatenate([
        ops.concatenate([gram, vp[:, None]], axis=1),
        ops.concatenate([vp[None, :], pp], axis=1),
    ], axis=0)  # Gram matrix of V = [S, Y, p]

    ss = gram[:m, :m]
    sy = gram[:m, m:]
    newer = ops.logical_and(ops.greater(stamps[:, None], stamps[None, :]),
                            ops.logical_and(valid[:, None], valid[None, :]))
    lower = ops.where(newer, sy, ops.zeros_like(sy))  # L_ij = s_i'y_j, i newer than j
    invalid_eye = ops.diag(1.0 - valid_f)
    middle = ops.concatenate([
        ops.concatenate([sigma * ss + invalid_eye, lower], axis=1),
        ops.concatenate([ops.transpose(lower), -ops.diag(ops.diagonal(sy)) - invalid_eye],
                        axis=1),
    ], axis=0)
    v_w = ops.concatenate([sigma * g_full[:, :m], g_full[:, m:2 * m]], axis=1)  # V'W
    # Pseudo-inverse of the (symmetric, indefinite) middle matrix by an eigen-solve: a
    # singular one (repeated pairs) or a non-finite one never raises, unlike an LU solve.
    middle_ok = ops.all(ops.isfinite(middle))
    middle = ops.where(middle_ok, middle, ops.eye(2 * m, dtype=dtype))
    nu, w = ops.eigh(0.5 * (middle + ops.transpose(middle)))
    big = ops.greater(ops.abs(nu), 1e-12 * ops.maximum(ops.max(ops.abs(nu)), 1e-300))
    inv_nu = ops.where(big, 1.0 / ops.where(big, nu, 1.0), 0.0)
    middle_inv = ops.matmul(w * inv_nu[None, :], ops.transpose(w))
    v_b_v = sigma * g_full - ops.matmul(v_w, ops.matmul(middle_inv, ops.transpose(v_w)))
    v_b_v = ops.where(middle_ok, v_b_v, sigma * g_full)

    # Robustness: the eigen-solves only ever see finite, well-scaled matrices (Gram matrix
    # scaled to unit diagonal); anything non-finite falls back to the proximal-SGD step
    # d = -p / sigma for this step (a_s = a_y = 0, a_p = -1/sigma).
    size = 2 * m + 1
    eye = ops.eye(size, dtype=dtype)
    healthy = ops.logical_and(ops.all(ops.isfinite(g_full)), ops.all(ops.isfinite(v_b_v)))
    diag = ops.diagonal(g_full)
    scale = ops.where(ops.greater(diag, 0.0), 1.0 / ops.sqrt(ops.maximum(diag, 1e-300)), 0.0)
    scale = ops.where(healthy, scale, ops.zeros_like(scale))
    unit = ops.where(healthy, g_full, eye) * scale[:, None] * scale[None, :]
    lam, u = ops.eigh(unit)
    keep = ops.greater(lam, 1e-10 * ops.maximum(ops.max(lam), 1e-300))
    basis = scale[:, None] * u * ops.where(keep, 1.0 / ops.sqrt(ops.maximum(lam, 1e-300)),
                                           0.0)[None, :]
    model = ops.matmul(ops.transpose(basis), ops.matmul(ops.where(healthy, v_b_v, eye), basis))
    model = 0.5 * (model + ops.transpose(model))
    healthy = ops.logical_and(healthy, ops.all(ops.isfinite(model)))
    model = ops.where(healthy, model, eye)
    gradient = ops.matmul(ops.transpose(basis), ops.where(healthy, g_full[:, -1], 0.0))
    mu, q = ops.eigh(model)
    mu = ops.maximum(mu + ops.cast(shift, dtype), ops.cast(floor, dtype))
    coefficients = -ops.matmul(q, ops.matmul(ops.transpose(q), gradient) / mu)
    a = ops.matmul(basis, coefficients)
    fallback = ops.concatenate([ops.zeros((2 * m,), dtype),
                                ops.reshape(-1.0 / sigma, (1,))])
    a = ops.where(ops.logical_and(healthy, ops.all(ops.isfinite(a))), a, fallback)
    return a[:m], a[m:2 * m], a[2 * m]
