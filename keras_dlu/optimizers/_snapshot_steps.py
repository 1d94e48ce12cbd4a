"""Proxtone's steps with a reference gradient: variance reduction and same-batch pairs.

The methods of :class:`SnapshotSteps` are the part of a Proxtone step used when the
train-step hook (``keras_dlu.optimizers._reference_gradient``) supplies ``g_B(w_snap)``;
the formulas are in ``keras_dlu.optimizers._variance_reduction``. They work on the state
dictionary of ``Proxtone._read_state`` (tensors in, tensors out, no assignment).
"""

import warnings

from keras import ops

from keras_dlu.optimizers import _pairs, _reference_gradient
from keras_dlu.optimizers import _trust_region as tr
from keras_dlu.optimizers import _variance_reduction as vr
from keras_dlu.optimizers._vectors import all_finite, dot


class SnapshotSteps:
    """Mixin of ``Proxtone``: the hook's interface and the snapshot statistics."""

    def _build_snapshot_state(self, var_list, scalar):
        """The state of the hooked step (created in every mode, so that a saved optimizer
        loads whichever mode the loading model allows)."""
        (self._snapshots, self._reference_sums, self._difference_sums, self._last_steps,
         self._last_directions) = self.add_optimizer_variables(
            var_list, ["snapshot", "snapshot_gradient_sum", "snapshot_difference_sum",
                       "last_step", "last_direction"])
        self._reference_count = scalar("snapshot_gradient_count")
        self._snapshot_valid = scalar("snapshot_valid")
        self._curvature_bound = scalar("curvature_bound")
        self._sharpest = scalar("sharpest_curvature")  # the newest power-iteration estimate
        self._difference_square_sum = scalar("snapshot_difference_square_sum")
        self._deviation_square_sum = scalar("snapshot_gradient_deviation_square_sum")
        self._noise_share = scalar("noise_share", 1.0)
        self._shift_value = scalar("trust_region_shift")  # 0: not set yet (starts at L)
        self._last_scalars = scalar("last_step_scalars", 0.0, (4,))  # slope, model, l1, valid

    def _snapshot_state_variables(self):
        return dict(curvature_bound=self._curvature_bound, probes=self._probes,
                    sharpest=self._sharpest, difference_sums=self._difference_sums,
                    difference_square_sum=self._difference_square_sum,
                    snapshots=self._snapshots, reference_sums=self._reference_sums,
                    reference_count=self._reference_count,
                    snapshot_valid=self._snapshot_valid,
                    deviation_square_sum=self._deviation_square_sum,
                    noise_share=self._noise_share, shift=self._shift_value,
                    last_steps=self._last_steps, last_directions=self._last_directions,
                    last_scalars=self._last_scalars)

    def _current_shift(self, state):
        """The trust-region shift; ``L`` until the first ratio has been measured."""
        return ops.where(ops.greater(state["shift"], 0.0), state["shift"],
                         ops.maximum(state["curvature_bound"], 1e-12))

    def _noise_weighted(self, floor, state):
        """The eigenvalue floor times ``q ** FLOOR_EXPONENT`` (``_trust_region``)."""
        return tr.noise_weight(state["noise_share"]) * floor

    def _step_ratio_statistics(self, state, direction, finite):
        """The shift after the last step's ratio ``rho`` (``_trust_region``); with exact
        gradients (noise share below ``EXACT_SHARE``) the consecutive pair is offered."""
        slope, model, l1_change, valid = [state["last_scalars"][i] for i in range(4)]
        valid = ops.logical_and(finite, ops.greater(valid, 0.0))
        rho = tr.step_ratio(slope, dot(direction, state["last_steps"]), model, l1_change)
        bound = ops.maximum(state["curvature_bound"], 1e-12)
        state = dict(state, shift=ops.where(valid, tr.updated_shift(
            self._current_shift(state), rho, bound), state["shift"]))
        share = state["noise_share"]
        exact = ops.logical_and(valid, ops.logical_and(ops.greater_equal(share, 0.0),
                                                       ops.less(share, tr.EXACT_SHARE)))
        y = [v - u for v, u in zip(direction, state["last_directions"])]
        return ops.cond(exact, lambda: self._add_pair(state, state["last_steps"], y, True),
                        lambda: state)

    def _record_step(self, state, values, written, direction, moved):
        """The step just taken, its slope ``v'd`` and model change, for the next ratio."""
        step = [new - x for new, x in zip(written, values)]
        l1_change = self.l1 * sum(ops.sum(ops.abs(new) - ops.abs(x))
                                  for new, x in zip(written, values))
        slope = dot(direction, step)
        pseudo_slope = dot(self._pseudo_gradient(values, direction), step)
        scalars = ops.stack([slope, tr.model_change(slope, pseudo_slope, l1_change),
                             l1_change, ops.cast(moved, "float32")])
        keep = lambda new, old: [ops.where(moved, a, b) for a, b in zip(new, old)]  # noqa: E731
        return dict(state, last_steps=keep(step, state["last_steps"]),
                    last_directions=keep(direction, state["last_directions"]),
                    last_scalars=ops.where(moved, scalars, state["last_scalars"]))

    def _attach_hook(self):
        """Installs the reference-gradient train step; False (and why) if it cannot."""
        reason = _reference_gradient.attach(self)
        self.variance_reduction_fallback = reason
        if reason not in (None, _reference_gradient.NO_MODEL):
            warnings.warn(f"Proxtone(variance_reduction=True): {reason}; it uses "
                          "block-averaged curvature pairs without variance reduction.",
                          stacklevel=3)
        return reason is None

    def reference_point(self, model_variables):
        """The snapshot weights in the order of ``model_variables`` (the current weights
        until the first snapshot is taken)."""
        valid = ops.greater(self._snapshot_valid, 0.0)
        return [ops.where(valid, ops.cast(self._snapshots[self._get_variable_index(v)],
                                          v.dtype), v.value) for v in model_variables]

    def probe_direction(self, model_variables):
        """The power-iteration direction (``_sharpness``), in ``model_variables`` order."""
        return [ops.convert_to_tensor(self._probes[self._get_variable_index(v)])
                for v in model_variables]

    def probe_due(self):
        """True at a cycle's first step (a new snapshot): the hook measures ``L`` there."""
        return ops.equal(self._reference_count, 0.0)

    def set_reference_gradients(self, gradients, probe=None):
        """Hands over ``g_B(w_snap)`` and the probe's ``(direction, estimate)`` (model-variable
        order) for the step being traced."""
        self._references = (gradients, probe)

    def _take_references(self, trainable_variables):
        """This trace's ``(g_B(w_snap), probe)`` in the order of ``self._trainable_variables``,
        or ``(None, None)`` (not hooked, or the first call's stock trace)."""
        handed, self._references = self._references, None
        if handed is None or not self._hooked:
            return None, None
        references, probe = handed
        references = self._dense_gradients(references, trainable_variables)
        if probe is not None:
            probe = (self._dense_gradients(probe[0], trainable_variables), probe[1])
        return references, probe

    def _measured_curvature(self, state, probe, finite):
        """``curvature_bound`` raised to the probe's estimate, and the new direction (both
        unchanged without a probe, at a step with no estimate, or a non-finite one)."""
        if probe is None:
            return state
        direction, estimate = probe
        estimate = ops.cast(estimate, "float32")
        valid = ops.logical_and(ops.logical_and(finite, ops.isfinite(estimate)),
                                ops.greater(estimate, 0.0))
        valid = ops.logical_and(valid, all_finite(direction))
        return dict(state, curvature_bound=ops.where(
            valid, ops.maximum(state["curvature_bound"], estimate), state["curvature_bound"]),
            sharpest=ops.where(valid, estimate, state["sharpest"]),
            probes=[ops.where(valid, u, old) for u, old in zip(direction, state["probes"])])

    def _snapshot_statistics(self, state, values, gradients, references, probe, finite):
        """The variance-reduced direction and the snapshot's running gradient mean; every
        ``pair_interval``-th step of a cycle, the same-batch pair ``(w - w_snap, g - h)``.
        Without a reference gradient it is the batch gradient (see _reference_gradient)."""
        if references is None:
            return state, gradients
        state = self._measured_curvature(state, probe, finite)
        references = [ops.where(finite, h, 0.0) for h in references]
        weight = ops.cast(finite, "float32")
        deviations = tr.welford(state["deviation_square_sum"], state["reference_sums"],
                                state["reference_count"], references, weight)
        sums, count = vr.accumulate(state["reference_sums"], references,
                                    state["reference_count"], weight)
        mean = [t / ops.maximum(count, 1.0) for t in sums]
        pseudo_mean = self._pseudo_gradient(values, mean)
        share = tr.noise_share(deviations, count, dot(pseudo_mean, pseudo_mean))
        state = dict(state, deviation_square_sum=deviations, noise_share=ops.where(
            ops.greater_equal(share, 0.0), share, state["noise_share"]))
        valid = ops.greater(state["snapshot_valid"], 0.0)
        snapshot = [ops.where(valid, w, x) for w, x in zip(state["snapshots"], values)]
        s, y = vr.curvature_pair(values, gradients, snapshot, references)
        state = dict(state, reference_sums=sums, reference_count=count,
                     difference_sums=[t + weight * d for t, d in zip(state["difference_sums"], y)],
                     difference_square_sum=state["difference_square_sum"] + weight * dot(y, y))
        # Every pair_interval-th step of a cycle, and its second step, whose s is one step
        # long: that pair sees the sharp directions the steps move along, so L bounds them.
        offer = ops.logical_and(finite, ops.logical_or(
            ops.equal(ops.mod(count, float(self.pair_interval)), 0.0), ops.equal(count, 2.0)))
        state = ops.cond(offer, lambda: self._add_pair(state, s, y, True), lambda: state)
        return state, vr.direction(gradients, references, sums, count)

    def _refresh_snapshot(self, state, written):
        """A new snapshot (the weights just written) after ``snapshot_interval`` steps."""
        count = state["reference_count"]
        full = ops.greater_equal(count, float(self.snapshot_interval))
        refresh = ops.logical_or(full, ops.equal(state["snapshot_valid"], 0.0))
        step_scale = ops.where(full, self._cycle_noise_scale(state), state["step_scale"])
        return dict(
            state, snapshots=[ops.where(refresh, x, w)
                              for x, w in zip(written, state["snapshots"])],
            reference_sums=[ops.where(refresh, 0.0, t) for t in state["reference_sums"]],
            difference_sums=[ops.where(refresh, 0.0, t) for t in state["difference_sums"]],
            difference_square_sum=ops.where(refresh, 0.0, state["difference_square_sum"]),
            deviation_square_sum=ops.where(refresh, 0.0, state["deviation_square_sum"]),
            reference_count=ops.where(refresh, 0.0, count), step_scale=step_scale,
            snapshot_valid=ops.ones_like(state["snapshot_valid"]))

    def _cycle_noise_scale(self, state):
        """The step scale ``c`` of the next cycle from this one: the signal is the cycle's
        mean direction ``mean(g - h) + mean h``, the noise the variance of ``g - h``."""
        inverse = 1.0 / ops.maximum(state["reference_count"], 1.0)
        mean_difference = [inverse * t for t in state["difference_sums"]]
        variance = (inverse * state["difference_square_sum"]
                    - dot(mean_difference, mean_difference))
        mean_direction = [d + inverse * t
                          for d, t in zip(mean_difference, state["reference_sums"])]
        pseudo = self._pseudo_gradient(self._values(), mean_direction)
        return ops.cast(_pairs.noise_step_scale(dot(pseudo, pseudo), variance,
                                                self.noise_scale), "float32")
