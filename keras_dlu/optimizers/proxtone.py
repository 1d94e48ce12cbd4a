"""PROXTONE: proximal stochastic Newton-type gradient descent with L1 sparsity (Fujitsu)."""

import keras
from keras import ops

from keras_dlu.optimizers._subspace import subspace_direction
from keras_dlu.optimizers._validation import (check_int, check_learning_rate,
                                              check_range)


@keras.saving.register_keras_serializable(package="keras_dlu")
class Proxtone(keras.optimizers.Optimizer):
    """Optimizer that implements PROXTONE (Shi and Liu), a proximal Newton-type method.

    Minimises `mean training loss + l1 * sum(|w|)` over the variables it updates. Each
    step, for the whole parameter vector `x` at once:

    1. A curvature pair `s = x - x_prev`, `y = g - g_prev` is added to a memory of the last
       `memory` pairs, unless it fails the mini-batch filter (`s'y <= min_pair_cosine *
       |s||y|`: noise-dominated pairs are dropped), or anything is non-finite
       (non-finite gradients never enter the memory, and the step is skipped).
    2. `p` is the minimum-norm subgradient of the objective (`g + l1*sign(x)` where
       `x != 0`, `g` shrunk by `l1` where `x == 0`).
    3. The quadratic model `p'd + d'Bd/2`, `B` the limited-memory BFGS matrix of the
       pairs (initial matrix `sigma*I`, `sigma = s'y/s's` of the newest pair), is
       projected onto the low-dimensional subspace `span(S, Y, p)` (at most
       `2*memory + 1` dimensions, which contains `B^{-1}p` exactly) and solved there with
       a small dense eigen-solve whose eigenvalues are floored at `damping * sigma`: a
       safeguard that scales with the problem, so no step is longer than `1/damping`
       times the gradient step `p/sigma` (mini-batch pairs underestimate curvature).
       Should the small solve fail (non-finite numbers), that step is proximal SGD, and
       non-finite new weights are never written.
    4. The step is mapped back: `u = learning_rate * d + t * (p - g)` with
       `d = -B^{-1} p` (damped) and `t = learning_rate / sigma`; without curvature
       information `u = -t * g`, i.e. proximal SGD with step `t`.
    5. Trust region: the step is bounded by a radius `r` on its Euclidean norm over all
       variables. If `|u| > r`, `u` is shrunk by `c = r / |u|` (the same as multiplying
       the learning rate by `c`, so the L1 threshold shrinks too). The first step
       (proximal SGD with `sigma = initial_curvature`) is never shrunk and sets
       `r0 = |u|`. After each step, the slope of the smooth-plus-L1 model along the last
       step `s` is judged (it went from `s'p_prev = s'p - s'y` to `s'p`): a step that was
       not downhill, or overshot the 1-d minimum along `s` by more than half
       (`s'p > -s'p_prev / 2`), sets `r = |s| / 2`; any other step sets
       `r = max(r, radius_growth * |s|)`. Always `r <= max_radius * r0`, so from the first
       step no step is longer than `max_radius` times the first proximal-SGD step (noisy
       mini-batch pairs can make `sigma` tiny and `t` huge; the radius absorbs that).
    6. The proximal L1 step soft-thresholds with the threshold scaled the same way:
       `x = soft(x + c*u, c*t*l1)`. At a minimiser `p = 0`, so the minimisers of the
       objective are its fixed points; coordinates become exactly zero.

    PROXTONE+: with `first_order_after=N`, steps after the N-th are the first-order
    proximal update `x = soft(x - t*g, t*l1)` with the last curvature estimate.

    Mini-batches: use PROXTONE+ with a decaying learning rate to converge (the curvature
    pairs of tiny late steps are mostly noise; the first-order phase keeps the estimate).

    Memory: `2 * memory + 2` parameter-sized vectors (the `s` and `y` memories, the
    previous parameters and gradient) plus `O(memory**2)` scalars (the Gram matrix of the
    pairs) and a few scalars (`sigma`, the radius and the first radius). Cost per step:
    two passes over the memory (`4 * memory` inner products and a linear combination)
    plus a few vector operations (one more for the step norm).

    `requires_all_gradients = True` (class attribute): the update needs every gradient
    and variable together (one subspace over the whole parameter vector), so it cannot
    be applied one variable at a time, e.g. by a memory-saving rewrite that frees each
    gradient as soon as it is applied. `tf.distribute` strategies with more than one
    replica are not supported (a clear error at build).

    Reference: Z. Shi, R. Liu, "Large Scale Optimization with Proximal Stochastic
    Newton-Type Gradient Descent", ECML PKDD 2015 (arXiv:1409.2979); PROXTONE+ from
    the same authors' follow-up.

    Args:
        learning_rate: positive step multiplier (a float, schedule or callable); `1.0`
            takes the full quasi-Newton step. Defaults to `1.0`.
        l1: non-negative L1 coefficient. Defaults to `0.0`.
        memory: number of curvature pairs kept (>= 1). Defaults to `10`.
        damping: in (0, 1]; `damping * sigma` is the floor of the projected model's
            eigenvalues, so steps are at most `1/damping` gradient steps. `0.3` works on
            L1 softmax regression (full and mini-batch) and on a 4-layer MNIST MLP at
            batch 64; `1.0` is first-order proximal SGD with the curvature step size.
            Defaults to `0.3`.
        min_pair_cosine: pairs with `cos(s, y)` at or below this, in [0, 1), are dropped.
            Defaults to `0.1`.
        initial_curvature: `sigma` before the first accepted pair (the first steps are
            proximal SGD with step `learning_rate / initial_curvature`). Defaults to `10.0`.
        first_order_after: `None`, or the number of steps after which to switch to the
            first-order proximal update (PROXTONE+). Defaults to `None`.
        radius_growth: >= 1; after a good step the trust radius may grow to this many
            times that step's length. Defaults to `2.0`.
        max_radius: >= 1; cap of the trust radius in units of the first step's length
            (`learning_rate / initial_curvature * |g_0|` for the first gradient `g_0`).
            Defaults to `10.0`.
        weight_decay, clipnorm, clipvalue, global_clipnorm, use_ema, ema_momentum,
        ema_overwrite_frequency, loss_scale_factor, gradient_accumulation_steps, name:
            the standard arguments of `keras.optimizers.Optimizer`.
    """

    requires_all_gradients = True

    def __init__(
        self,
        learning_rate=1.0,
        l1=0.0,
        memory=10,
        damping=0.3,
        min_pair_cosine=0.1,
        initial_curvature=10.0,
        first_order_after=None,
        radius_growth=2.0,
        max_radius=10.0,
        weight_decay=None,
        clipnorm=None,
        clipvalue=None,
        global_clipnorm=None,
        use_ema=False,
        ema_momentum=0.99,
        ema_overwrite_frequency=None,
        loss_scale_factor=None,
        gradient_accumulation_steps=None,
        name="proxtone",
        **kwargs,
    ):
        check_learning_rate(learning_rate)
        check_range("l1", l1, 0.0, None, "a non-negative float")
        check_int("memory", memory, 1, "an integer >= 1")
        check_range("damping", damping, 0.0, 1.0, "in (0, 1]", low_open=True)
        check_range("min_pair_cosine", min_pair_cosine, 0.0, 1.0, "in [0, 1)", high_open=True)
        check_range("initial_curvature", initial_curvature, 0.0, None, "a positive float",
                    low_open=True)
        check_int("first_order_after", first_order_after, 0, "None or an integer >= 0",
                  allow_none=True)
        check_range("radius_growth", radius_growth, 1.0, None, "a float >= 1")
        check_range("max_radius", max_radius, 1.0, None, "a float >= 1")
        super().__init__(
            learning_rate=learning_rate,
            name=name,
            weight_decay=weight_decay,
            clipnorm=clipnorm,
            clipvalue=clipvalue,
            global_clipnorm=global_clipnorm,
            use_ema=use_ema,
            ema_momentum=ema_momentum,
            ema_overwrite_frequency=ema_overwrite_frequency,
            loss_scale_factor=loss_scale_factor,
            gradient_accumulation_steps=gradient_accumulation_steps,
            **kwargs,
        )
        self.l1 = float(l1)
        self.memory = int(memory)
        self.damping = float(damping)
        self.min_pair_cosine = float(min_pair_cosine)
        self.initial_curvature = float(initial_curvature)
        self.first_order_after = first_order_after
        self.radius_growth = float(radius_growth)
        self.max_radius = float(max_radius)

    def build(self, var_list):
        """Creates the pair memories, previous point/gradient and the small state."""
        if self.built:
            return
        strategy = getattr(self, "_distribution_strategy", None)
        if strategy is not None and strategy.num_replicas_in_sync > 1:
            raise ValueError("Proxtone does not support tf.distribute strategies with more than "
                             f"one replica (got {strategy.num_replicas_in_sync}); use one "
                             "replica or keras_dlu.distributed for data parallelism.")
        super().build(var_list)
        m = self.memory
        self._memory = []  # per variable: rows 0..m-1 are the s vectors, m..2m-1 the y vectors
        for variable in var_list:
            prefix = variable.path.replace("/", "_")
            self._memory.append(self.add_variable((2 * m,) + tuple(variable.shape), "zeros",
                                                  dtype=variable.dtype,
                                                  name=f"{prefix}_pair_memory"))
        self._previous_values, self._previous_gradients = self.add_optimizer_variables(
            var_list, ["previous_value", "previous_gradient"])
        self._gram = self.add_variable((2 * m, 2 * m), "zeros", dtype="float32", name="gram")
        self._stamps = self.add_variable((m,), keras.initializers.Constant(-1.0),
                                         dtype="float32", name="pair_stamps")
        self._pairs_seen = self.add_variable((), "zeros", dtype="float32", name="pairs_seen")
        self._has_previous = self.add_variable((), "zeros", dtype="float32", name="has_previous")
        self._curvature = self.add_variable((), keras.initializers.Constant(
            self.initial_curvature), dtype="float32", name="curvature")
        self._radius = self.add_variable((), "zeros", dtype="float32", name="trust_radius")
        self._initial_radius = self.add_variable((), "zeros", dtype="float32",
                                                 name="initial_radius")

    def update_step(self, gradient, variable, learning_rate):
        raise NotImplementedError("Proxtone updates all variables together "
                                  "(requires_all_gradients = True); use apply().")

    def _backend_update_step(self, grads, trainable_variables, learning_rate):
        n = len(self._trainable_variables)
        gradients = [None] * n
        for gradient, variable in zip(grads, trainable_variables):
            index = self._get_variable_index(variable)
            if hasattr(gradient, "indices"):  # IndexedSlices -> dense
                gradient = ops.scatter(ops.expand_dims(gradient.indices, -1), gradient.values,
                                       variable.shape)
            gradients[index] = ops.cast(gradient, "float32")
        gradients = [ops.zeros(v.shape, "float32") if g is None else g
                     for g, v in zip(gradients, self._trainable_variables)]
        finite = ops.all(ops.stack([ops.all(ops.isfinite(g)) for g in gradients]))
        lr = ops.cast(learning_rate, "float32")

        def second_order():
            self._second_order_step(gradients, lr)

        def first_order():
            self._first_order_step(gradients, lr)

        if self.first_order_after is None:
            step = second_order
        else:
            def step():
                ops.cond(ops.greater_equal(self.iterations, self.first_order_after),
                         first_order, second_order)
        ops.cond(finite, step, lambda: None)

    # -- the two kinds of step -------------------------------------------------------

    def _values(self):
        return [ops.cast(v, "float32") for v in self._trainable_variables]

    def _pseudo_gradient(self, values, gradients):
        if self.l1 == 0.0:
            return gradients
        l1 = self.l1
        out = []
        for x, g in zip(values, gradients):
            shrunk = ops.sign(g) * ops.maximum(ops.abs(g) - l1, 0.0)
            out.append(ops.where(ops.equal(x, 0.0), shrunk, g + l1 * ops.sign(x)))
        return out

    def _write(self, values):
        finite = ops.all(ops.stack([ops.all(ops.isfinite(v)) for v in values]))
        values = [ops.where(finite, v, x) for v, x in zip(values, self._values())]
        for variable, value in zip(self._trainable_variables, values):
            self.assign(variable, ops.cast(value, variable.dtype))

    def _soft(self, value, threshold):
        if self.l1 == 0.0:
            return value
        return ops.sign(value) * ops.maximum(ops.abs(value) - threshold, 0.0)

    def _first_order_step(self, gradients, lr):
        t = lr / self._curvature
        self._write([self._soft(x - t * g, t * self.l1)
                     for x, g in zip(self._values(), gradients)])

    def _second_order_step(self, gradients, lr):
        """One pass over the memory for all inner products, one for the step."""
        m = self.memory
        values = self._values()
        pseudo = self._pseudo_gradient(values, gradients)
        s = [x - ops.cast(px, "float32") for x, px in zip(values, self._previous_values)]
        y = [g - ops.cast(pg, "float32") for g, pg in zip(gradients, self._previous_gradients)]
        # [2m, 3] inner products of the stored [S; Y] with (s, y, p), and the 3x3 of (s, y, p).
        dots, own = None, None
        for memory_var, a, b, c in zip(self._memory, s, y, pseudo):
            columns = ops.stack([ops.reshape(a, (-1,)), ops.reshape(b, (-1,)),
                                 ops.reshape(c, (-1,))], axis=1)
            flat = ops.reshape(ops.cast(memory_var, "float32"), (2 * m, -1))
            d, o = ops.matmul(flat, columns), ops.matmul(ops.transpose(columns), columns)
            dots, own = (d, o) if dots is None else (dots + d, own + o)
        ss, sy, yy = own[0, 0], own[0, 1], own[1, 1]
        sp, yp, pp = own[0, 2], own[1, 2], own[2, 2]
        accept = ops.logical_and(ops.greater(self._has_previous, 0.0),
                                 ops.greater(sy, self.min_pair_cosine * ops.sqrt(ss * yy)))
        accept = ops.logical_and(accept, ops.all(ops.isfinite(own)))
        accept = ops.logical_and(accept, ops.all(ops.isfinite(dots)))
        accept = ops.logical_and(accept, ops.greater(ss, 0.0))
        slot = ops.cast(ops.argmin(self._stamps), "int32")
        chosen = ops.logical_and(ops.equal(ops.arange(m), slot), accept)
        chosen_s = ops.concatenate([chosen, ops.zeros((m,), "bool")])
        chosen_y = ops.concatenate([ops.zeros((m,), "bool"), chosen])
        row_s = ops.where(chosen_s, ss, ops.where(chosen_y, sy, dots[:, 0]))
        row_y = ops.where(chosen_s, sy, ops.where(chosen_y, yy, dots[:, 1]))
        gram = self._gram
        gram = ops.where(chosen_s[:, None], row_s[None, :], gram)
        gram = ops.where(chosen_s[None, :], row_s[:, None], gram)
        gram = ops.where(chosen_y[:, None], row_y[None, :], gram)
        gram = ops.where(chosen_y[None, :], row_y[:, None], gram)
        v_dot_p = ops.where(chosen_s, sp, ops.where(chosen_y, yp, dots[:, 2]))
        stamps = ops.where(chosen, self._pairs_seen, self._stamps)
        # sigma = s'y / s's of the newest accepted pair (B0 = sigma*I); a small, noisy sigma
        # makes t large, which the trust radius below bounds.
        curvature = ops.where(accept, ops.clip(sy / ops.maximum(ss, 1e-30), 1e-6, 1e6),
                              self._curvature)
        a_s, a_y, a_p = subspace_direction(gram, v_dot_p[:m], v_dot_p[m:], pp, stamps,
                                           curvature, self.damping * curvature)
        a = ops.cast(ops.concatenate([a_s, a_y, ops.reshape(a_p, (1,))]), "float32")
        # The new pair's coefficients apply to (s, y) directly; the old rows of its slot
        # (still in memory) get zero.
        a_old = ops.where(ops.concatenate([chosen, chosen]), 0.0, a[:2 * m])
        a_new_s = ops.sum(ops.where(chosen, a[:m], 0.0))
        a_new_y = ops.sum(ops.where(chosen, a[m:2 * m], 0.0))
        a_p = a[2 * m]
        # Trust region on the whole step (no loss evaluations needed): along the last step
        # s the slope of the objective went from s'p_prev (= s'p - s'y) to s'p. A step that
        # was not downhill, or that overshot the 1-d minimum along s by more than half
        # (s'p > -s'p_prev / 2), sets the radius to half its length; a good step lets the
        # radius grow to `radius_growth` times its length. The first step (proximal SGD with
        # `initial_curvature`) sets the initial radius to its own length.
        prev_slope = sp - sy
        judged = ops.logical_and(ops.greater(self._has_previous, 0.0), ops.greater(ss, 0.0))
        bad = ops.logical_or(ops.greater_equal(prev_slope, 0.0),
                             ops.greater(sp, -0.5 * prev_slope))
        last = ops.sqrt(ss)
        radius = ops.where(bad, 0.5 * last,
                           ops.maximum(self._radius, self.radius_growth * last))
        radius = ops.where(ops.logical_and(judged, ops.isfinite(radius)), radius, self._radius)
        t = lr / curvature
        steps = []
        for x, g, p, ds, dy, memory_var in zip(values, gradients, pseudo, s, y, self._memory):
            flat = ops.reshape(ops.cast(memory_var, "float32"), (2 * m, -1))
            direction = ops.reshape(ops.matmul(a_old[None, :], flat)[0], x.shape)
            direction = direction + a_new_s * ds + a_new_y * dy + a_p * p
            steps.append(lr * direction + t * (p - g))
        length = ops.sqrt(sum(ops.sum(ops.square(u)) for u in steps))
        first = ops.greater(self._has_previous, 0.0)
        initial = ops.where(first, self._initial_radius, length)
        radius = ops.minimum(ops.where(first, radius, length), self.max_radius * initial)
        # Shrinking the step is the same as shrinking the learning rate (threshold too).
        shrink = ops.where(ops.greater(length, radius),
                           radius / ops.maximum(length, 1e-30), 1.0)
        new_values = [self._soft(x + shrink * u, shrink * t * self.l1)
                      for x, u in zip(values, steps)]

        def store_pair():
            for memory_var, ds, dy in zip(self._memory, s, y):
                rows = ops.cast(ops.stack([ds, dy]), memory_var.dtype)
                start = [0] * len(memory_var.shape)
                for row, index in ((rows[0:1], slot), (rows[1:2], slot + m)):
                    start[0] = index
                    self.assign(memory_var, ops.slice_update(memory_var, start, row))

        ops.cond(accept, store_pair, lambda: None)
        self.assign(self._gram, gram)
        self.assign(self._stamps, stamps)
        self.assign(self._pairs_seen, self._pairs_seen + ops.cast(accept, "float32"))
        self.assign(self._curvature, curvature)
        self.assign(self._radius, radius)
        self.assign(self._initial_radius, initial)
        for store, new in ((self._previous_values, values),
                           (self._previous_gradients, gradients)):
            for memory_var, vector in zip(store, new):
                self.assign(memory_var, ops.cast(vector, memory_var.dtype))
        self.assign(self._has_previous, ops.ones((), "float32"))
        self._write(new_values)

    def get_config(self):
        config = super().get_config()
        config.update({
            "l1": self.l1,
            "memory": self.memory,
            "damping": self.damping,
            "min_pair_cosine": self.min_pair_cosine,
            "initial_curvature": self.initial_curvature,
            "first_order_after": self.first_order_after,
            "radius_growth": self.radius_growth,
            "max_radius": self.max_radius,
        })
        return config

