"""StableGRU: a `keras.layers.GRU` whose state-to-state matrix cannot explode.

Kanai, Fujiwara and Iwamura, "Preventing Gradient Explosions in Gated Recurrent Units",
NIPS 2017. The GRU's candidate-state recurrent matrix `W_hh` (Keras:
`recurrent_kernel[:, 2 * units:]`) is projected after every optimizer update so that its
spectral norm stays below 2 - delta, the point where the GRU's fixed point bifurcates
(in one dimension the Jacobian at h = 0 is 0.5 + w / 4): `W <- U diag(min(s, bound)) V^T`.
"""

import numbers

import keras
from keras import ops

PROJECTIONS = ("exact", "power")

# Subspace size and iterations of the "power" fast path. The subspace holds the top
# singular directions; when even its smallest singular value is above the bound, more
# directions may need clipping than it can hold, and that step falls back to the SVD.
POWER_RANK = 16
POWER_ITERATIONS = 2


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
        ``(projected, new_basis, smallest_ritz_value)``; when the smallest Ritz value is
        above the bound the subspace was too small and the caller must use the SVD.
    """
    q = basis
    for _ in range(iterations):
        q, _ = ops.qr(ops.matmul(ops.transpose(matrix), ops.matmul(matrix, q)))
    u, s, vh = ops.svd(ops.matmul(matrix, q), full_matrices=False)
    v = ops.matmul(q, ops.transpose(vh))
    excess = ops.maximum(s - bound, 0.0)
    projected = matrix - ops.matmul(u * excess[None, :], ops.transpose(v))
    return projected, v, s[-1]


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
        fast, basis, smallest = clip_top_singular_values(
            candidate, ops.cast(self.basis, dtype), self.bound)

        def exact():
            projected, v = clip_singular_values(candidate, self.bound)
            return projected, v[:, :rank]

        projected, basis = ops.cond(smallest > self.bound, exact, lambda: (fast, basis))
        self.basis.assign(ops.cast(basis, self.basis.dtype))
        self.fallbacks.assign_add(ops.cast(smallest > self.bound, "int32"))
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
        projection: `"exact"` (default) clips with an SVD every step; `"power"` warm-starts
            a 16-dimensional subspace iteration from the previous step's singular vectors
            and clips the singular values it finds (falls back to the SVD on steps where
            more than 16 exceed the bound). TensorFlow backend for `"power"`.
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

    def get_config(self):
        config = super().get_config()
        config.update({
            "spectral_bound": self.spectral_bound,
            "projection": self.projection,
            "recurrent_constraint": keras.constraints.serialize(self._user_recurrent_constraint),
        })
        return config
