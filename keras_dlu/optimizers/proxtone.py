"""PROXTONE: proximal stochastic Newton-type gradient descent with L1 sparsity (Fujitsu)."""

import keras
from keras import ops

from keras_dlu.optimizers import _pairs
from keras_dlu.optimizers._block_steps import BlockSteps
from keras_dlu.optimizers._gradients import dense_gradient
from keras_dlu.optimizers._pair_memory import PairMemory
from keras_dlu.optimizers._snapshot_steps import SnapshotSteps
from keras_dlu.optimizers._subspace import subspace_direction
from keras_dlu.optimizers._vectors import all_finite, as_list, dot, memory_dots
from keras_dlu.optimizers._validation import (check_int, check_learning_rate,
                                              check_range)


# With the hook, the least model eigenvalue as a share of the newest measured sharpest
# curvature: steps below 2 / lambda_max, 20% margin for the estimate (a lower bound).
STABLE_SHARE = 0.6


@keras.saving.register_keras_serializable(package="keras_dlu")
class Proxtone(SnapshotSteps, BlockSteps, PairMemory, keras.optimizers.Optimizer):
    """Optimizer that implements PROXTONE (Shi and Liu), a proximal Newton-type method.

    Minimises `mean training loss + l1 * sum(|w|)` over the variables it updates, for the
    whole parameter vector `x` at once. Each step:

    1. Statistics. With `variance_reduction=True` (default) and a model trained by `fit`,
       a train-step hook installed on first use (`keras_dlu.optimizers._reference_gradient`)
       also computes the batch's gradient at a snapshot `w_snap` of the weights (refreshed
       every `snapshot_interval` steps), `h = g_B(w_snap)`. The step then uses the
       variance-reduced gradient `v = g - h + mean h` (SVRG with the snapshot's full
       gradient estimated by the running mean of `h` since the snapshot, no extra pass;
       `keras_dlu.optimizers._variance_reduction`), every `pair_interval`-th step of a
       cycle offers the same-batch pair `s = x - w_snap`, `y = g - h`, and each cycle
       gives the next cycle's noise scale `c = |p_mean|^2 / (|p_mean|^2 + noise_scale *
       var(g - h))` (`p_mean` the pseudo-gradient of the cycle's mean `v`). Without the
       hook (`variance_reduction=False`, another backend, a custom `train_step`, a
       wrapping optimizer, gradient clipping; the reason is in
       `variance_reduction_fallback`, with a warning), `v = g` and the pairs and `c` come
       from block means of `x` and `g` over `pair_interval` steps (`_pairs`, SQN-style).
       Pairs with `cos(s, y) <= min_pair_cosine` are dropped; the last `memory` are kept.
    2. `p` is the minimum-norm subgradient of the objective at `v` (`v + l1*sign(x)` where
       `x != 0`, `v` shrunk by `l1` where `x == 0`).
    3. The quadratic model `p'd + d'Bd/2`, `B` the limited-memory BFGS matrix of the pairs
       (initial matrix `sigma*I`, `sigma = s'y/s's` of the newest pair), is projected onto
       the subspace `span(S, Y, p)` (`2*memory + 1` dimensions, containing `B^{-1}p`
       exactly) and solved there by a small dense eigen-solve whose eigenvalues are
       floored at `damping * L`, `L` the sharpest curvature. With the hook `L` is
       measured, no hand floor: power iteration on the batch Hessian at each new
       snapshot (`keras_dlu.optimizers._sharpness`) and the accepted `y'y/s'y` raise it
       (never decreasing; following the newest estimate let mini-batch noise in), and the
       floor is at least `STABLE_SHARE` times the newest estimate (steps below
       `2 / lambda_max` where the pairs missed the sharp directions); the first call's
       step, traced before the hook, does not move. With block pairs `L = max(
       initial_curvature, largest y'y/s'y of the stored pairs)`. No step is longer than
       `1/damping` times the gradient step `p/L`.
    4. Mapped back and proximal L1 step: `x = soft(x + c*lr*d + t*(p - v), t*l1)` with
       `d = -B^{-1}p` (damped), `t = c*lr/max(sigma, damping*L)`; without pairs this is
       proximal SGD with step `c*lr/max(initial_curvature, damping*L)`. Coordinates
       become exactly zero; the minimisers of the objective (`p = 0`) are fixed points.

    Non-finite gradients skip the step (no state changes but the iteration count), and
    non-finite new weights are never written. No variable is assigned inside a branch (each
    is assigned once per step from the value selected for it), so the step runs on the
    TensorFlow, JAX and PyTorch backends. PROXTONE+: with `first_order_after=N`, steps
    after the N-th are the first-order proximal update `x = soft(x - t*g, t*l1)` with
    `t = c*lr/L`.

    Memory: `2 * memory + 8` parameter-sized vectors (the pairs; the snapshot, its
    gradient sums and the power-iteration direction; the block sums and means) plus
    `O(memory**2)` scalars. Cost per step: with the hook, a second forward and backward
    pass of the batch, and at each snapshot `_sharpness.POWER_ITERATIONS` more; one pass
    over the memory for `2*memory` inner products, one for the linear combination, a few
    vector operations.

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
    their use in limited memory methods", Math. Prog. 1994 (compact L-BFGS form);
    R. Johnson, T. Zhang, "Accelerating Stochastic Gradient Descent using Predictive
    Variance Reduction", NIPS 2013 (SVRG); N. N. Schraudolph, J. Yu, S. Guenter, "A
    Stochastic Quasi-Newton Method for Online Convex Optimization", AISTATS 2007
    (same-batch pairs).

    Args:
        learning_rate: positive step multiplier (a float, schedule or callable); `1.0`
            takes the full (damped) quasi-Newton step. Defaults to `1.0`.
        l1: non-negative L1 coefficient. Defaults to `0.0`.
        memory: number of curvature pairs kept (>= 1). Defaults to `5`.
        pair_interval: steps between pairs (>= 1): with the hook, a pair every
            `pair_interval` steps of a snapshot cycle; without, the steps per block of the
            averaged pairs (1 is the classic pair of consecutive steps, right for
            full-batch training). Defaults to `10`.
        damping: in (0, 1]; eigenvalue floor of the model in units of `L`, so steps are
            at most `1/damping` safe gradient steps; `1.0` is proximal SGD with step
            `1/L`. `0.1` converges faster on convex problems but diverges on the MNIST
            MLP. Defaults to `0.3`.
        min_pair_cosine: pairs with `cos(s, y)` at or below this, in [0, 1), are dropped.
            Defaults to `0.1`.
        initial_curvature: `sigma` before the first pair; without the hook also the least
            `L` (the first steps are proximal SGD with step `learning_rate /
            initial_curvature`; no step is longer than `1/damping` times that). With the
            hook `L` is measured and this is no floor. Defaults to `10.0`.
        noise_scale: >= 0, weight of the gradient variance in the step scale `c`; `0`
            disables the scaling. Defaults to `0.3`.
        first_order_after: `None`, or the number of steps after which to switch to the
            first-order proximal update (PROXTONE+). Defaults to `None`.
        variance_reduction: `True` or `False`: use the reference-gradient hook (step 1)
            where it can be installed. Defaults to `True`.
        snapshot_interval: steps between snapshot refreshes (>= 1). Defaults to `50`.
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
        variance_reduction=True,
        snapshot_interval=50,
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
        if not isinstance(variance_reduction, bool):
            raise ValueError(f"`variance_reduction` must be True or False; got "
                             f"{variance_reduction!r}.")
        check_int("snapshot_interval", snapshot_interval, 1, "an integer >= 1")
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
        self.variance_reduction = variance_reduction
        self.snapshot_interval = int(snapshot_interval)
        self.variance_reduction_fallback = None  # why the hook is not used, set by build
        self._references = None  # this trace's g_B(w_snap), set by the hook's train step

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
        self._hooked = self.variance_reduction and self._attach_hook()
        m = self.memory
        self._memory = []  # per variable: rows 0..m-1 are the s vectors, m..2m-1 the y vectors
        for variable in var_list:
            prefix = variable.path.replace("/", "_")
            self._memory.append(self.add_variable((2 * m,) + tuple(variable.shape), "zeros",
                                                  dtype=variable.dtype,
                                                  name=f"{prefix}_pair_memory"))
        self._probes = [self.add_variable(  # the power-iteration direction (_sharpness)
            tuple(v.shape), keras.initializers.RandomNormal(seed=index), dtype="float32",
            name=f"{v.path.replace('/', '_')}_probe") for index, v in enumerate(var_list)]
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
        self._build_snapshot_state(var_list, scalar)

    def update_step(self, gradient, variable, learning_rate):
        raise NotImplementedError("Proxtone updates all variables together "
                                  "(requires_all_gradients = True); use apply().")

    def _backend_update_step(self, grads, trainable_variables, learning_rate):
        """One step, branch-free: no variable is assigned inside a branch (JAX cannot trace
        that), every state variable is assigned once from the values selected for it."""
        gradients = self._dense_gradients(grads, trainable_variables)
        references, probe = self._take_references(trainable_variables)
        finite = all_finite(gradients + (references or []))
        gradients = [ops.where(finite, g, 0.0) for g in gradients]  # a skipped step adds 0
        lr = ops.cast(learning_rate, "float32")
        values = self._values()
        state = self._read_state()
        if self._hooked:
            state, direction = self._snapshot_statistics(state, values, gradients,
                                                         references, probe, finite)
        else:
            state, direction = self._block_statistics(state, values, gradients, finite), gradients
        if self._hooked:
            state = self._step_ratio_statistics(state, direction, finite)
        moved = ops.logical_and(finite, self._bounded(state))
        written = self._written(values, self._move(state, values, direction, lr), moved)
        if self._hooked:
            state = self._record_step(state, values, written, direction, moved)
            state = self._refresh_snapshot(state, written)
        for name, variables in self._state_variables().items():
            for variable, value in zip(as_list(variables), as_list(state[name])):
                self.assign(variable, value)
        for variable, value in zip(self._trainable_variables, written):
            self.assign(variable, ops.cast(value, variable.dtype))

    # -- the named pieces of a step (tensors in, tensors out) ------------------------------

    def _state_variables(self):
        """The state one step reads and assigns (the pairs, and the statistics of the
        mode in use: snapshot or blocks)."""
        common = {"memory": self._memory, "gram": self._gram, "stamps": self._stamps,
                  "pair_curvatures": self._pair_curvatures, "pairs_seen": self._pairs_seen,
                  "curvature": self._curvature, "step_scale": self._step_scale}
        if self._hooked:
            return dict(common, **self._snapshot_state_variables())
        return dict(common, value_sums=self._value_sums, gradient_sums=self._gradient_sums,
                    previous_values=self._previous_values,
                    previous_gradients=self._previous_gradients,
                    block_count=self._block_count, block_square_sum=self._block_square_sum,
                    has_previous=self._has_previous)

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

    def _bounded(self, state):
        """Whether ``L`` is known: always with block pairs (floored), with the hook once it
        has measured it (the first call's stock step, before any measure, does not move)."""
        if self._hooked:
            return ops.greater(state["curvature_bound"], 0.0)
        return ops.convert_to_tensor(True)

    def _largest_curvature(self, state):
        """``L``: with the hook, the largest curvature measured so far (power iteration at
        each snapshot, and ``y'y/s'y`` of the same-batch pairs; it never decreases); with
        block pairs, the largest ``y'y/s'y`` of the stored pairs, floored at
        ``initial_curvature``."""
        if self._hooked:
            return ops.maximum(state["curvature_bound"], 1e-12)
        return _pairs.largest_curvature(state["pair_curvatures"], state["stamps"],
                                        self.initial_curvature)

    def _eigenvalue_floor(self, state):
        """``damping * L``; with the hook at least ``STABLE_SHARE`` times the newest
        power-iteration estimate (no step longer than ``2 / lambda_max``), weighted by the
        batch-noise share (``_trust_region``: 0 with exact gradients, where the
        trust-region shift alone bounds the steps)."""
        floor = self.damping * self._largest_curvature(state)
        if self._hooked:
            return self._noise_weighted(ops.maximum(floor, STABLE_SHARE * state["sharpest"]),
                                        state)
        return floor

    def _shift(self, state):
        """The trust-region shift of the model's eigenvalues (hook only; else 0)."""
        if self._hooked:
            return self._current_shift(state)
        return ops.zeros((), "float32")

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

    def _written(self, values, new_values, finite):
        """The new weights, or the old ones if the step was skipped or any is non-finite."""
        keep = ops.logical_and(finite, all_finite(new_values))
        return [ops.where(keep, new, old) for old, new in zip(values, new_values)]

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
        dots = memory_dots(state["memory"], [pseudo], m)[:, 0]
        floor = self._eigenvalue_floor(state)
        shift = self._shift(state)
        a_s, a_y, a_p = subspace_direction(state["gram"], dots[:m], dots[m:],
                                           dot(pseudo, pseudo), state["stamps"],
                                           state["curvature"], floor, shift)
        coefficients = ops.cast(ops.concatenate([a_s, a_y]), "float32")[None, :]
        a_p = ops.cast(a_p, "float32")
        scale = state["step_scale"] * lr
        t = scale / ops.maximum(state["curvature"] + shift, floor)
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
            "variance_reduction": self.variance_reduction,
            "snapshot_interval": self.snapshot_interval,
        })
        return config

