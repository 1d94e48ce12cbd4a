"""StableGRU: a `keras.layers.GRU` whose state-to-state matrix cannot explode.

Kanai, Fujiwara and Iwamura, "Preventing Gradient Explosions in Gated Recurrent Units",
NIPS 2017. The GRU's candidate-state recurrent matrix `W_hh` (Keras:
`recurrent_kernel[:, 2 * units:]`) is projected after every optimizer update so that its
spectral norm stays below 2 - delta, the point where the GRU's fixed point bifurcates
(in one dimension the Jacobian at h = 0 is 0.5 + w / 4): `W <- U diag(min(s, bound)) V^T`.
"""

import numbers

import keras
import numpy as np
from keras import ops

PROJECTIONS = ("exact", "power")
# Keys of the "power" path's state in a saved model (beside GRU's own variables).
_BASIS_KEY = "spectral_basis"
_FALLBACKS_KEY = "spectral_exact_fallbacks"

# Subspace size and iterations of the "power" fast path. The subspace holds the top
# singular directions; when even its smallest singular value is above the bound, more
# directions may need clipping than it can hold, and that step falls back to the SVD.
POWER_RANK = 16
POWER_ITERATIONS = 2
# The fast path is trusted on a step when its smallest Ritz value is below the bound and
# every Ritz triplet it clips has converged to a relative residual of at most
# POWER_RESIDUAL; otherwise that step uses the SVD. On trusted steps a direction outside
# the subspace can still sit slightly above the bound: "power" keeps the spectral norm at
# most (1 + POWER_TOLERANCE) * bound (the tests check it on updates that push many
# singular values past the bound), "exact" keeps it at the bound up to float rounding.
POWER_RESIDUAL = 1e-2
POWER_TOLERANCE = 1e-3


def clip_singular_values(matrix, bound):
    """``matrix`` with its singular values above ``bound`` clipped to it (exact SVD).

    The correction ``U diag(max(s - bound, 0)) V^T`` is subtracted, so a matrix already
    inside the bound comes back bit for bit unchanged.
    """
    u, s, vh = ops.svd(matrix, full_matrices=False)
    excess = ops.maximum(s - bound, 0.0)
    return matrix - ops.matmul(u * excess[None, :], vh), ops.transpose(vh)


def clip_top_singular_values(matrix, basis, bound, iterations=POWER_ITERATIONS):
    """Clips the singular values above ``bound`` found in a warm-started subspace.

    Subspace iteration on ``matrix^T matrix`` from ``basis`` (``[n, k]``, the previous
    step's right singular vectors), then Rayleigh-Ritz: the ``k`` singular triplets of
    ``matrix @ basis`` estimate the top ``k`` of ``matrix``, and those above the bound are
    clipped. Costs ``O(n^2 k)`` instead of the SVD's ``O(n^3)``.

    Returns:
        ``(projected, new_basis, trusted)``: ``trusted`` is false when the result may
        exceed the bound, and the caller must use the SVD instead: when even the smallest
        Ritz value is above the bound (more values to clip than the subspace holds), or
        when a Ritz triplet it clips has not converged (its residual
        ``||matrix^T u - s v||`` is above ``POWER_RESIDUAL * s``), so that the subspace
        may still miss a direction above the bound.
    """
    q = basis
    for _ in range(iterations):
        q, _ = ops.qr(ops.matmul(ops.transpose(matrix), ops.matmul(matrix, q)))
    u, s, vh = ops.svd(ops.matmul(matrix, q), full_matrices=False)
    v = ops.matmul(q, ops.transpose(vh))
    excess = ops.maximum(s - bound, 0.0)
    projected = matrix - ops.matmul(u * excess[None, :], ops.transpose(v))
    residual = ops.sqrt(ops.sum(ops.square(
        ops.matmul(ops.transpose(matrix), u) - v * s[None, :]), axis=0))
    unconverged = ops.logical_and(s > bound, residual > POWER_RESIDUAL * s)
    trusted = ops.logical_and(s[-1] < bound, ops.logical_not(ops.any(unconverged)))
    return projected, v, trusted


class _CandidateSpectralProjection(keras.constraints.Constraint):
    """The recurrent-kernel constraint StableGRU installs (internal; not serialized).

    Applies the user's `recurrent_constraint` first, then projects the candidate block.
    The "power" path keeps its warm-start basis in a non-trainable variable that the
    layer creates in `build`; it is deliberately not a layer weight, so StableGRU has
    exactly GRU's weights (`set_weights(gru.get_weights())` works both ways).
    """

    def __init__(self, units, bound, projection, inner=None):
        self.units = units
        self.bound = bound
        self.projection = projection
        self.inner = inner
        self.basis = None
        self.fallbacks = None

    def build(self, seed):
        if self.projection != "power" or self.basis is not None:
            return
        rank = min(self.units, POWER_RANK)
        self.basis = keras.Variable(
            keras.initializers.Orthogonal(seed=seed)((self.units, rank)),
            trainable=False, name="spectral_basis")
        self.fallbacks = keras.Variable(0, dtype="int32", trainable=False,
                                        name="spectral_exact_fallbacks")

    def __call__(self, w):
        if self.inner is not None:
            w = self.inner(w)
        w = ops.convert_to_tensor(w)
        dtype = w.dtype
        compute_dtype = "float32" if dtype in ("float16", "bfloat16") else dtype
        gates = w[:, : 2 * self.units]
        candidate = ops.cast(w[:, 2 * self.units:], compute_dtype)
        if self.projection == "exact" or self.basis is None or self.basis.shape[1] == self.units:
            candidate, _ = clip_singular_values(candidate, self.bound)
        else:
            candidate = self._power(candidate, compute_dtype)
        return ops.concatenate([gates, ops.cast(candidate, dtype)], axis=1)

    def _power(self, candidate, dtype):
        rank = self.basis.shape[1]
        fast, basis, trusted = clip_top_singular_values(
            candidate, ops.cast(self.basis, dtype), self.bound)

        def exact():
            projected, v = clip_singular_values(candidate, self.bound)
            return projected, v[:, :rank]

        projected, basis = ops.cond(trusted, lambda: (fast, basis), exact)
        self.basis.assign(ops.cast(basis, self.basis.dtype))
        self.fallbacks.assign_add(1 - ops.cast(trusted, "int32"))
        return projected

    def get_config(self):
        return {"units": self.units, "bound": self.bound, "projection": self.projection}


@keras.saving.register_keras_serializable(package="keras_dlu")
class StableGRU(keras.layers.GRU):
    """GRU whose candidate-state recurrent matrix keeps its spectral norm below a bound.

    A drop-in `keras.layers.GRU`: it takes every GRU argument, has exactly GRU's weights
    and computes exactly GRU's outputs (cuDNN is still used when Keras' conditions for it
    hold). The only difference: after every optimizer update, the singular values of the
    candidate block `recurrent_kernel[:, 2 * units:]` above `spectral_bound` are clipped
    to it; the update and reset gate blocks are untouched. A user `recurrent_constraint`
    is applied first, then the projection.

    Reference: Kanai, Fujiwara, Iwamura, "Preventing Gradient Explosions in Gated
    Recurrent Units", NIPS 2017.

    Args:
        units: dimensionality of the output space.
        spectral_bound: largest allowed singular value of the candidate block, in (0, 2);
            defaults to 1.8 (the GRU's fixed point loses stability at 2).
        projection: `"exact"` (default) clips with an SVD every step, keeping the norm at
            the bound up to float rounding; `"power"` warm-starts a 16-dimensional
            subspace iteration from the previous step's singular vectors and clips the
            singular values it finds, falling back to the SVD on steps where more than 16
            exceed the bound or the subspace has not converged; it keeps the norm at most
            `(1 + POWER_TOLERANCE) * spectral_bound` (`POWER_TOLERANCE` = 1e-3). Its
            warm-start basis is saved with the model.
        **kwargs: every `keras.layers.GRU` argument (`reset_after`, `return_sequences`,
            `recurrent_constraint`, ...).
    """

    def __init__(self, units, spectral_bound=1.8, projection="exact", **kwargs):
        if (isinstance(spectral_bound, bool) or not isinstance(spectral_bound, (int, float))
                or not 0.0 < float(spectral_bound) < 2.0):
            raise ValueError("`spectral_bound` must be a number in the open interval (0, 2); "
                             f"received spectral_bound={spectral_bound!r}.")
        if projection not in PROJECTIONS:
            raise ValueError(f"`projection` must be one of {PROJECTIONS}; "
                             f"received projection={projection!r}.")
        user_constraint = keras.constraints.get(kwargs.pop("recurrent_constraint", None))
        if isinstance(units, bool) or not isinstance(units, numbers.Integral) or units < 1:
            raise ValueError(f"`units` must be a positive integer; received units={units!r}.")
        self._spectral_projection = _CandidateSpectralProjection(
            units, float(spectral_bound), projection, inner=user_constraint)
        super().__init__(units, recurrent_constraint=self._spectral_projection, **kwargs)
        self.spectral_bound = float(spectral_bound)
        self.projection = projection
        self._user_recurrent_constraint = user_constraint

    def build(self, sequences_shape, initial_state_shape=None):
        super().build(sequences_shape, initial_state_shape)
        self._spectral_projection.build(seed=self.cell.seed)

    @property
    def recurrent_constraint(self):
        """The user's `recurrent_constraint` (the projection is applied after it)."""
        return self._user_recurrent_constraint

    @property
    def exact_fallback_steps(self):
        """How many "power" steps fell back to the SVD (0 for "exact" or before build)."""
        fallbacks = self._spectral_projection.fallbacks
        return 0 if fallbacks is None else int(ops.convert_to_numpy(fallbacks))

    def save_own_variables(self, store):
        """GRU's state, plus the "power" path's warm-start basis and fallback count.

        They are not layer weights (StableGRU has exactly GRU's weights), so they are
        saved here under their own keys: a loaded model goes on from the saved basis
        instead of restarting the subspace iteration cold.
        """
        super().save_own_variables(store)
        projection = self._spectral_projection
        if projection.basis is not None:
            store[_BASIS_KEY] = projection.basis
            store[_FALLBACKS_KEY] = projection.fallbacks

    def load_own_variables(self, store):
        own = {key: store[key] for key in store.keys()
               if key not in (_BASIS_KEY, _FALLBACKS_KEY)}
        super().load_own_variables(own)
        projection = self._spectral_projection
        if projection.basis is not None and _BASIS_KEY in store.keys():
            projection.basis.assign(np.asarray(store[_BASIS_KEY]))
            projection.fallbacks.assign(np.asarray(store[_FALLBACKS_KEY]))

    def get_config(self):
        config = super().get_config()
        config.update({
            "spectral_bound": self.spectral_bound,
            "projection": self.projection,
            "recurrent_constraint": keras.constraints.serialize(self._user_recurrent_constraint),
        })
        return config
