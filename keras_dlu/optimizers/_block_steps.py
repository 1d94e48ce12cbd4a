"""Proxtone's steps without a reference gradient: block-averaged pairs and noise scale.

The methods of :class:`BlockSteps` are the part of a Proxtone step used when no
reference gradient is available (``variance_reduction=False``, or the hook could not be
installed); the pair formulas are in ``keras_dlu.optimizers._pairs``. They work on the
state dictionary of ``Proxtone._read_state`` (tensors in, tensors out, no assignment).
"""

from keras import ops

from keras_dlu.optimizers import _pairs
from keras_dlu.optimizers._vectors import dot


class BlockSteps:
    """Mixin of ``Proxtone``: block sums, and at a block's end its pair and noise scale."""

    def _block_statistics(self, state, values, gradients, finite):
        """The block sums with this step added; at a block's end, its pair and noise scale."""
        state = self._accumulate_block(state, values, gradients, finite)
        closing = ops.logical_and(finite, ops.greater_equal(state["block_count"],
                                                            float(self.pair_interval)))
        return ops.cond(closing, lambda: self._close_block(state, values), lambda: state)

    def _accumulate_block(self, state, values, gradients, finite):
        """The block sums with this step added (a skipped step adds nothing)."""
        weight = ops.cast(finite, "float32")
        sums = {}
        for name, new in (("value_sums", values), ("gradient_sums", gradients)):
            sums[name] = [total + ops.cast(weight * vector, total.dtype)
                          for total, vector in zip(state[name], new)]
        return dict(state, **sums,
                    block_square_sum=state["block_square_sum"] + weight * dot(gradients,
                                                                              gradients),
                    block_count=state["block_count"] + weight)

    def _close_block(self, state, values):
        """Block means -> a curvature pair with the previous block, and the noise scale."""
        count = state["block_count"]
        means_x = [ops.cast(t, "float32") / count for t in state["value_sums"]]
        means_g = [ops.cast(t, "float32") / count for t in state["gradient_sums"]]
        s = [a - ops.cast(b, "float32") for a, b in zip(means_x, state["previous_values"])]
        y = [a - ops.cast(b, "float32") for a, b in zip(means_g, state["previous_gradients"])]
        state = self._add_pair(state, s, y, ops.greater(state["has_previous"], 0.0))
        variance = state["block_square_sum"] / count - dot(means_g, means_g)
        pseudo = self._pseudo_gradient(values, means_g)
        step_scale = _pairs.noise_step_scale(dot(pseudo, pseudo), variance, self.noise_scale)
        return dict(
            state, step_scale=ops.cast(step_scale, "float32"),
            previous_values=[ops.cast(v, t.dtype) for v, t in zip(means_x, state["value_sums"])],
            previous_gradients=[ops.cast(v, t.dtype)
                                for v, t in zip(means_g, state["gradient_sums"])],
            value_sums=[ops.zeros_like(t) for t in state["value_sums"]],
            gradient_sums=[ops.zeros_like(t) for t in state["gradient_sums"]],
            block_square_sum=ops.zeros_like(state["block_square_sum"]),
            block_count=ops.zeros_like(count), has_previous=ops.ones_like(count))
