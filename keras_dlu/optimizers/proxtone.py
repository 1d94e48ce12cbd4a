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
    non-finite new weights are never written. No variable is assigned inside a branch (each
    is assigned once per step from the value selected for it), so the step runs on the
    TensorFlow, JAX and PyTorch backends. PROXTONE+: with `first_order_after=N`, steps
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
        """One step, branch-free: no variable is assigned inside a branch (JAX cannot trace
        that), every state variable is assigned once from the values selected for it."""
        gradients = self._dense_gradients(grads, trainable_variables)
        finite = _all_finite(gradients)
        gradients = [ops.where(finite, g, 0.0) for g in gradients]  # a skipped step adds 0
        lr = ops.cast(learning_rate, "float32")
        values = self._values()
        state = self._accumulate_block(self._read_state(), values, gradients, finite)
        closing = ops.logical_and(finite, ops.greater_equal(state["block_count"],
                                                            float(self.pair_interval)))
        state = ops.cond(closing, lambda: self._close_block(state, values), lambda: state)
        for name, variables in self._state_variables().items():
            for variable, value in zip(_as_list(variables), _as_list(state[name])):
                self.assign(variable, value)
        self._write(values, self._move(state, values, gradients, lr), finite)

    # -- the named pieces of a step (tensors in, tensors out) ------------------------------

    def _state_variables(self):
        return {"value_sums": self._value_sums, "gradient_sums": self._gradient_sums,
                "previous_values": self._previous_values,
                "previous_gradients": self._previous_gradients, "memory": self._memory,
                "gram": self._gram, "stamps": self._stamps,
                "pair_curvatures": self._pair_curvatures, "pairs_seen": self._pairs_seen,
                "block_count": self._block_count, "block_square_sum": self._block_square_sum,
                "has_previous": self._has_previous, "curvature": self._curvature,
                "step_scale": self._step_scale}

    def _read_state(self):
        """The current value of every state variable, as tensors (lists stay lists)."""
        return {name: [ops.convert_to_tensor(v) for v in variables]
                if isinstance(variables, list) else ops.convert_to_tensor(variables)
                for name, variables in self._state_variables().items()}

    def _dense_gradients(self, grads, trainable_variables):
        """float32 gradients in the order of `self._trainable_variables`, zeros if None."""
        gradients = [None] * len(self._trainable_variables)
        for gradient, variable in zip(grads, trainable_variables):
            gradients[self._get_variable_index(variable)] = ops.cast(
                dense_gradient(gradient, variable), "float32")
        return [ops.zeros(v.shape, "float32") if g is None else g
                for g, v in zip(gradients, self._trainable_variables)]

    def _values(self):
        return [ops.cast(v, "float32") for v in self._trainable_variables]

    def _accumulate_block(self, state, values, gradients, finite):
        """The block sums with this step added (a skipped step adds nothing)."""
        weight = ops.cast(finite, "float32")
        sums = {}
        for name, new in (("value_sums", values), ("gradient_sums", gradients)):
            sums[name] = [total + ops.cast(weight * vector, total.dtype)
                          for total, vector in zip(state[name], new)]
        return dict(state, **sums,
                    block_square_sum=state["block_square_sum"] + weight * _dot(gradients,
                                                                              gradients),
                    block_count=state["block_count"] + weight)

    def _close_block(self, state, values):
        """Block means -> a curvature pair with the previous block, and the noise scale."""
        count = state["block_count"]
        means_x = [ops.cast(t, "float32") / count for t in state["value_sums"]]
        means_g = [ops.cast(t, "float32") / count for t in state["gradient_sums"]]
        s = [a - ops.cast(b, "float32") for a, b in zip(means_x, state["previous_values"])]
        y = [a - ops.cast(b, "float32") for a, b in zip(means_g, state["previous_gradients"])]
        state = self._add_pair(state, s, y)
        variance = state["block_square_sum"] / count - _dot(means_g, means_g)
        pseudo = self._pseudo_gradient(values, means_g)
        step_scale = _pairs.noise_step_scale(_dot(pseudo, pseudo), variance, self.noise_scale)
        return dict(
            state, step_scale=ops.cast(step_scale, "float32"),
            previous_values=[ops.cast(v, t.dtype) for v, t in zip(means_x, state["value_sums"])],
            previous_gradients=[ops.cast(v, t.dtype)
                                for v, t in zip(means_g, state["gradient_sums"])],
            value_sums=[ops.zeros_like(t) for t in state["value_sums"]],
            gradient_sums=[ops.zeros_like(t) for t in state["gradient_sums"]],
            block_square_sum=ops.zeros_like(state["block_square_sum"]),
            block_count=ops.zeros_like(count), has_previous=ops.ones_like(count))

    def _add_pair(self, state, s, y):
        """The memory, Gram matrix and pair bookkeeping after offering the pair ``(s, y)``."""
        ss, sy, yy = _dot(s, s), _dot(s, y), _dot(y, y)
        dots = _memory_dots(state["memory"], [s, y], self.memory)
        finite = ops.logical_and(ops.all(ops.isfinite(ops.stack([ss, sy, yy]))),
                                 ops.all(ops.isfinite(dots)))
        accept = _pairs.accept_pair(ops.greater(state["has_previous"], 0.0), ss, sy, yy,
                                    self.min_pair_cosine, finite)
        slot = ops.cast(ops.argmin(state["stamps"]), "int32")
        chosen = ops.logical_and(ops.equal(ops.arange(self.memory), slot), accept)
        return dict(
            state,
            memory=[self._store_pair(memory, slot, ds, dy, accept)
                    for memory, ds, dy in zip(state["memory"], s, y)],
            gram=_pairs.replace_slot(state["gram"], chosen, dots, ss, sy, yy),
            stamps=ops.where(chosen, state["pairs_seen"], state["stamps"]),
            pair_curvatures=ops.where(chosen, yy / ops.maximum(sy, 1e-30),
                                      state["pair_curvatures"]),
            curvature=ops.where(accept, ops.clip(sy / ops.maximum(ss, 1e-30), 1e-6, 1e6),
                                state["curvature"]),
            pairs_seen=state["pairs_seen"] + ops.cast(accept, "float32"))

    def _store_pair(self, memory, slot, s, y, accept):
        """``memory`` with rows ``slot`` and ``slot + m`` set to ``s`` and ``y`` if accepted."""
        start = [0] * len(memory.shape)
        stored = memory
        for row, index in ((s, slot), (y, slot + self.memory)):
            start[0] = index
            stored = ops.slice_update(stored, start, ops.cast(row[None], memory.dtype))
        return ops.where(accept, stored, memory)

    def _largest_curvature(self, state):
        return _pairs.largest_curvature(state["pair_curvatures"], state["stamps"],
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

    def _write(self, values, new_values, finite):
        """Assigns the new weights unless the step was skipped or any of them is non-finite."""
        keep = ops.logical_and(finite, _all_finite(new_values))
        for variable, old, new in zip(self._trainable_variables, values, new_values):
            self.assign(variable, ops.cast(ops.where(keep, new, old), variable.dtype))

    def _move(self, state, values, gradients, lr):
        if self.first_order_after is None:
            return self._second_order_move(state, values, gradients, lr)
        return ops.cond(ops.greater_equal(ops.convert_to_tensor(self.iterations),
                                          self.first_order_after),
                        lambda: self._first_order_move(state, values, gradients, lr),
                        lambda: self._second_order_move(state, values, gradients, lr))

    def _first_order_move(self, state, values, gradients, lr):
        t = state["step_scale"] * lr / self._largest_curvature(state)
        return [self._soft(x - t * g, t * self.l1) for x, g in zip(values, gradients)]

    def _second_order_move(self, state, values, gradients, lr):
        """The damped subspace quasi-Newton step, mapped back, then the proximal L1 step."""
        m = self.memory
        pseudo = self._pseudo_gradient(values, gradients)
        dots = _memory_dots(state["memory"], [pseudo], m)[:, 0]
        floor = self.damping * self._largest_curvature(state)
        a_s, a_y, a_p = subspace_direction(state["gram"], dots[:m], dots[m:],
                                           _dot(pseudo, pseudo), state["stamps"],
                                           state["curvature"], floor)
        coefficients = ops.cast(ops.concatenate([a_s, a_y]), "float32")[None, :]
        a_p = ops.cast(a_p, "float32")
        scale = state["step_scale"] * lr
        t = scale / ops.maximum(state["curvature"], floor)
        new_values = []
        for x, g, p, memory in zip(values, gradients, pseudo, state["memory"]):
            flat = ops.reshape(ops.cast(memory, "float32"), (2 * m, -1))
            direction = ops.reshape(ops.matmul(coefficients, flat)[0], x.shape) + a_p * p
            new_values.append(self._soft(x + scale * direction + t * (p - g), t * self.l1))
        return new_values

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


def _all_finite(tensors):
    return ops.all(ops.stack([ops.all(ops.isfinite(t)) for t in tensors]))


def _as_list(value):
    return value if isinstance(value, list) else [value]


def _memory_dots(memory, vectors, m):
    """``[2m, k]`` inner products of the stored ``[S; Y]`` rows with k vector lists."""
    total = None
    for index, memory_value in enumerate(memory):
        columns = ops.stack([ops.reshape(v[index], (-1,)) for v in vectors], axis=1)
        flat = ops.reshape(ops.cast(memory_value, "float32"), (2 * m, -1))
        part = ops.matmul(flat, columns)
        total = part if total is None else total + part
    return total
