"""PROXTONE: proximal stochastic Newton-type gradient descent with L1 sparsity (Fujitsu)."""

import keras
from keras import ops

from keras_dlu.optimizers import _pairs
from keras_dlu.optimizers._gradients import dense_gradient
from keras_dlu.optimizers._subspace import subspace_direction
from keras_dlu.optimizers._validation import (check_int, check_learning_rate,
                                              check_range)


@keras.saving.register_keras_serializable(package="keras_dlu")
class Proxtone(keras.optimizers.Optimizer):
    """Optimizer that implements PROXTONE (Shi and Liu), a proximal Newton-type method.

    Minimises `mean training loss + l1 * sum(|w|)` over the variables it updates, for the
    whole parameter vector `x` at once. Each step:

    1. Block statistics: `x`, the gradient `g` and `|g|^2` are summed over the current
       block of `pair_interval` steps. When a block is full, its means make one curvature
       pair with the previous block's means (`s = mean x - previous mean x`,
       `y = mean g - previous mean g`, see `keras_dlu.optimizers._pairs`), kept unless
       `cos(s, y) <= min_pair_cosine`; the memory holds the last `memory` pairs. The block
       also gives the step's noise scale `c = |p_mean|^2 / (|p_mean|^2 + noise_scale *
       variance)` (`p_mean` the block-mean pseudo-gradient): about 1 far from a
       minimiser, shrinking like the signal-to-noise ratio near one, so mini-batch
       training converges without a schedule.
    2. `p` is the minimum-norm subgradient of the objective (`g + l1*sign(x)` where
       `x != 0`, `g` shrunk by `l1` where `x == 0`).
    3. The quadratic model `p'd + d'Bd/2`, `B` the limited-memory BFGS matrix of the pairs
       (initial matrix `sigma*I`, `sigma = s'y/s's` of the newest pair), is projected onto
       the subspace `span(S, Y, p)` (`2*memory + 1` dimensions, containing `B^{-1}p`
       exactly) and solved there by a small dense eigen-solve whose eigenvalues are
       floored at `damping * L`, `L = max(initial_curvature, y'y/s'y over the stored
       pairs)` (the largest curvature seen): no step is longer than `1/damping` times the
       gradient step `p/L`, nor than `1/damping` times the first steps.
    4. Mapped back and proximal L1 step: `x = soft(x + c*lr*d + t*(p - g), t*l1)` with
       `d = -B^{-1}p` (damped), `t = c*lr/max(sigma, damping*L)`; without pairs this is
       proximal SGD with step `c*lr/initial_curvature`. Coordinates become exactly zero;
       the minimisers of the objective (`p = 0`) are fixed points.

    Non-finite gradients skip the step (no state changes but the iteration count), and
    non-finite new weights are never written. PROXTONE+: with `first_order_after=N`, steps
    after the N-th are the first-order proximal update `x = soft(x - t*g, t*l1)` with
    `t = c*lr/L`.

    Memory: `2 * memory + 4` parameter-sized vectors (the pairs, the block sums of `x` and
    `g`, the previous block's means) plus `O(memory**2)` scalars. Cost per step: one
    pass over the memory for `2*memory` inner products, one for the linear combination,
    a few vector operations.

    `requires_all_gradients = True` (class attribute): the update needs every gradient and
    variable together (one subspace over the whole parameter vector), so it cannot be
    applied one variable at a time (e.g. by a memory-saving rewrite).
    `tf.distribute` strategies with more than one replica are not supported (a clear error
    at build); `keras_dlu.distributed.DistributedOptimizer` can wrap it.

    References: Z. Shi, R. Liu, "Large Scale Optimization with Proximal Stochastic
    Newton-Type Gradient Descent", ECML PKDD 2015 (arXiv:1409.2979), and PROXTONE+ from the
    same authors; R. H. Byrd, S. L. Hansen, J. Nocedal, Y. Singer, "A Stochastic
    Quasi-Newton Method for Large-Scale Optimization", SIAM J. Optim. 2016 (averaged pairs);
    R. H. Byrd, J. Nocedal, R. B. Schnabel, "Representations of quasi-Newton matrices and
    their use in limited memory methods", Math. Prog. 1994 (compact L-BFGS form).

    Args:
        learning_rate: positive step multiplier (a float, schedule or callable); `1.0`
            takes the full (damped) quasi-Newton step. Defaults to `1.0`.
        l1: non-negative L1 coefficient. Defaults to `0.0`.
        memory: number of curvature pairs kept (>= 1). Defaults to `5`.
        pair_interval: steps per block of the averaged pairs (>= 1; 1 is the classic
            pair of consecutive steps, right for full-batch training). Defaults to `10`.
        damping: in (0, 1]; eigenvalue floor of the model in units of `L`, so steps are
            at most `1/damping` safe gradient steps; `1.0` is proximal SGD with step
            `1/L`. `0.1` converges faster on convex problems but diverges on the MNIST
            MLP. Defaults to `0.3`.
        min_pair_cosine: pairs with `cos(s, y)` at or below this, in [0, 1), are dropped.
            Defaults to `0.1`.
        initial_curvature: `sigma` before the first pair and the least `L` (the first
            steps are proximal SGD with step `learning_rate / initial_curvature`; no step
            is longer than `1/damping` times that). Defaults to `10.0`.
        noise_scale: >= 0, weight of the gradient variance in the step scale `c`; `0`
            disables the scaling. Defaults to `0.3`.
        first_order_after: `None`, or the number of steps after which to switch to the
            first-order proximal update (PROXTONE+). Defaults to `None`.
        weight_decay, clipnorm, clipvalue, global_clipnorm, use_ema, ema_momentum,
        ema_overwrite_frequency, loss_scale_factor, gradient_accumulation_steps, name:
            the standard arguments of `keras.optimizers.Optimizer`.
    """

    requires_all_gradients = True

    def __init__(
        self,
        learning_rate=1.0,
        l1=0.0,
        memory=5,
        pair_interval=10,
        damping=0.3,
        min_pair_cosine=0.1,
        initial_curvature=10.0,
        noise_scale=0.3,
        first_order_after=None,
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
        check_int("pair_interval", pair_interval, 1, "an integer >= 1")
        check_range("damping", damping, 0.0, 1.0, "in (0, 1]", low_open=True)
        check_range("min_pair_cosine", min_pair_cosine, 0.0, 1.0, "in [0, 1)", high_open=True)
        check_range("initial_curvature", initial_curvature, 0.0, None, "a positive float",
                    low_open=True)
        check_range("noise_scale", noise_scale, 0.0, None, "a non-negative float")
        check_int("first_order_after", first_order_after, 0, "None or an integer >= 0",
                  allow_none=True)
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
        self.pair_interval = int(pair_interval)
        self.damping = float(damping)
        self.min_pair_cosine = float(min_pair_cosine)
        self.initial_curvature = float(initial_curvature)
        self.noise_scale = float(noise_scale)
        self.first_order_after = first_order_after

    def build(self, var_list):
        """Creates the pair memory, the block sums, the previous block means, small state."""
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
        (self._value_sums, self._gradient_sums, self._previous_values,
         self._previous_gradients) = self.add_optimizer_variables(
            var_list, ["block_value_sum", "block_gradient_sum", "previous_block_value",
                       "previous_block_gradient"])

        def scalar(name, value=0.0, shape=()):
            return self.add_variable(shape, keras.initializers.Constant(value),
                                     dtype="float32", name=name)

        self._gram = scalar("gram", 0.0, (2 * m, 2 * m))
        self._stamps = scalar("pair_stamps", -1.0, (m,))
        self._pair_curvatures = scalar("pair_curvatures", 0.0, (m,))
        self._pairs_seen = scalar("pairs_seen")
        self._block_count = scalar("block_count")
        self._block_square_sum = scalar("block_square_sum")
        self._has_previous = scalar("has_previous_block")
        self._curvature = scalar("curvature", self.initial_curvature)
        self._step_scale = scalar("step_scale", 1.0)

    def update_step(self, gradient, variable, learning_rate):
        raise NotImplementedError("Proxtone updates all variables together "
                                  "(requires_all_gradients = True); use apply().")

    def _backend_update_step(self, grads, trainable_variables, learning_rate):
        gradients = self._dense_gradients(grads, trainable_variables)
        finite = ops.all(ops.stack([ops.all(ops.isfinite(g)) for g in gradients]))
        lr = ops.cast(learning_rate, "float32")
        ops.cond(finite, lambda: self._step(gradients, lr), lambda: None)

    # -- the named pieces of a step -------------------------------------------------------

    def _dense_gradients(self, grads, trainable_variables):
        """float32 gradients in the order of `self._trainable_variables`, zeros if None."""
        gradients = [None] * len(self._trainable_variables)
        for gradient, variable in zip(grads, trainable_variables):
            gradients[self._get_variable_index(variable)] = ops.cast(
                dense_gradient(gradient, variable), "float32")
        return [ops.zeros(v.shape, "float32") if g is None else g
                for g, v in zip(gradients, self._trainable_variables)]

    def _step(self, gradients, lr):
        values = self._values()
        self._accumulate_block(values, gradients)
        ops.cond(ops.greater_equal(self._block_count, float(self.pair_interval)),
                 lambda: self._close_block(values), lambda: None)
        if self.first_order_after is None:
            self._second_order_move(values, gradients, lr)
        else:
            ops.cond(ops.greater_equal(self.iterations, self.first_order_after),
                     lambda: self._first_order_move(values, gradients, lr),
                     lambda: self._second_order_move(values, gradients, lr))

    def _values(self):
        return [ops.cast(v, "float32") for v in self._trainable_variables]

    def _accumulate_block(self, values, gradients):
        for sums, new in ((self._value_sums, values), (self._gradient_sums, gradients)):
            for total, vector in zip(sums, new):
                self.assign_add(total, ops.cast(vector, total.dtype))
        self.assign_add(self._block_square_sum, _dot(gradients, gradients))
        self.assign_add(self._block_count, 1.0)

    def _close_block(self, values):
        """Block means -> a curvature pair with the previous block, and the noise scale."""
        count = self._block_count
        means_x = [ops.cast(t, "float32") / count for t in self._value_sums]
        means_g = [ops.cast(t, "float32") / count for t in self._gradient_sums]
        s = [a - ops.cast(b, "float32") for a, b in zip(means_x, self._previous_values)]
        y = [a - ops.cast(b, "float32") for a, b in zip(means_g, self._previous_gradients)]
        self._add_pair(s, y)
        variance = self._block_square_sum / count - _dot(means_g, means_g)
        pseudo = self._pseudo_gradient(values, means_g)
        self.assign(self._step_scale, _pairs.noise_step_scale(_dot(pseudo, pseudo), variance,
                                                              self.noise_scale))
        for store, new in ((self._previous_values, means_x),
                           (self._previous_gradients, means_g)):
            for variable, vector in zip(store, new):
                self.assign(variable, ops.cast(vector, variable.dtype))
        for total in self._value_sums + self._gradient_sums:
            self.assign(total, ops.zeros_like(total))
        self.assign(self._block_square_sum, 0.0)
        self.assign(self._block_count, 0.0)
        self.assign(self._has_previous, 1.0)

    def _memory_dots(self, vectors):
        """``[2m, k]`` inner products of the stored ``[S; Y]`` rows with k vector lists."""
        m = self.memory
        total = None
        for index, memory_var in enumerate(self._memory):
            columns = ops.stack([ops.reshape(v[index], (-1,)) for v in vectors], axis=1)
            flat = ops.reshape(ops.cast(memory_var, "float32"), (2 * m, -1))
            part = ops.matmul(flat, columns)
            total = part if total is None else total + part
        return total

    def _add_pair(self, s, y):
        ss, sy, yy = _dot(s, s), _dot(s, y), _dot(y, y)
        dots = self._memory_dots([s, y])
        finite = ops.logical_and(ops.all(ops.isfinite(ops.stack([ss, sy, yy]))),
                                 ops.all(ops.isfinite(dots)))
        accept = _pairs.accept_pair(ops.greater(self._has_previous, 0.0), ss, sy, yy,
                                    self.min_pair_cosine, finite)
        slot = ops.cast(ops.argmin(self._stamps), "int32")
        chosen = ops.logical_and(ops.equal(ops.arange(self.memory), slot), accept)
        self.assign(self._gram, _pairs.replace_slot(self._gram, chosen, dots, ss, sy, yy))
        self.assign(self._stamps, ops.where(chosen, self._pairs_seen, self._stamps))
        self.assign(self._pair_curvatures, ops.where(
            chosen, yy / ops.maximum(sy, 1e-30), self._pair_curvatures))
        self.assign(self._curvature, ops.where(
            accept, ops.clip(sy / ops.maximum(ss, 1e-30), 1e-6, 1e6), self._curvature))
        self.assign_add(self._pairs_seen, ops.cast(accept, "float32"))

        def store():
            m = self.memory
            for memory_var, ds, dy in zip(self._memory, s, y):
                start = [0] * len(memory_var.shape)
                for row, index in ((ds, slot), (dy, slot + m)):
                    start[0] = index
                    self.assign(memory_var, ops.slice_update(
                        memory_var, start, ops.cast(row[None], memory_var.dtype)))

        ops.cond(accept, store, lambda: None)

    def _largest_curvature(self):
        return _pairs.largest_curvature(self._pair_curvatures, self._stamps,
                                        self.initial_curvature)

    def _pseudo_gradient(self, values, gradients):
        if self.l1 == 0.0:
            return gradients
        l1 = self.l1
        return [ops.where(ops.equal(x, 0.0), ops.sign(g) * ops.maximum(ops.abs(g) - l1, 0.0),
                          g + l1 * ops.sign(x)) for x, g in zip(values, gradients)]

    def _soft(self, value, threshold):
        if self.l1 == 0.0:
            return value
        return ops.sign(value) * ops.maximum(ops.abs(value) - threshold, 0.0)

    def _write(self, values):
        """Assigns the new weights unless any of them is non-finite."""
        finite = ops.all(ops.stack([ops.all(ops.isfinite(v)) for v in values]))
        for variable, value in zip(self._trainable_variables, values):
            self.assign(variable, ops.cast(ops.where(finite, value, variable), variable.dtype))

    def _first_order_move(self, values, gradients, lr):
        t = self._step_scale * lr / self._largest_curvature()
        self._write([self._soft(x - t * g, t * self.l1) for x, g in zip(values, gradients)])

    def _second_order_move(self, values, gradients, lr):
        """The damped subspace quasi-Newton step, mapped back, then the proximal L1 step."""
        m = self.memory
        pseudo = self._pseudo_gradient(values, gradients)
        dots = self._memory_dots([pseudo])[:, 0]
        floor = self.damping * self._largest_curvature()
        a_s, a_y, a_p = subspace_direction(self._gram, dots[:m], dots[m:], _dot(pseudo, pseudo),
                                           self._stamps, self._curvature, floor)
        coefficients = ops.cast(ops.concatenate([a_s, a_y]), "float32")[None, :]
        a_p = ops.cast(a_p, "float32")
        scale = self._step_scale * lr
        t = scale / ops.maximum(self._curvature, floor)
        new_values = []
        for x, g, p, memory_var in zip(values, gradients, pseudo, self._memory):
            flat = ops.reshape(ops.cast(memory_var, "float32"), (2 * m, -1))
            direction = ops.reshape(ops.matmul(coefficients, flat)[0], x.shape) + a_p * p
            new_values.append(self._soft(x + scale * direction + t * (p - g), t * self.l1))
        self._write(new_values)

    def get_config(self):
        config = super().get_config()
        config.update({
            "l1": self.l1,
            "memory": self.memory,
            "pair_interval": self.pair_interval,
            "damping": self.damping,
            "min_pair_cosine": self.min_pair_cosine,
            "initial_curvature": self.initial_curvature,
            "noise_scale": self.noise_scale,
            "first_order_after": self.first_order_after,
        })
        return config


def _dot(a, b):
    """Inner product of two lists of tensors, as one float32 scalar."""
    return sum(ops.sum(x * y) for x, y in zip(a, b))
