"""Proxtone's memory of curvature pairs: offering a pair, storing it, its Gram matrix.

The methods of :class:`PairMemory` work on the state dictionary of ``Proxtone._read_state``
(tensors in, tensors out, no assignment); the small-matrix bookkeeping is in
``keras_dlu.optimizers._pairs``.
"""

from keras import ops

from keras_dlu.optimizers import _pairs
from keras_dlu.optimizers._vectors import dot, memory_dots


class PairMemory:
    """Mixin of ``Proxtone``: the pair memory's update."""

    def _add_pair(self, state, s, y, has_previous):
        """The memory, Gram matrix and pair bookkeeping after offering the pair ``(s, y)``."""
        ss, sy, yy = dot(s, s), dot(s, y), dot(y, y)
        dots = memory_dots(state["memory"], [s, y], self.memory)
        finite = ops.logical_and(ops.all(ops.isfinite(ops.stack([ss, sy, yy]))),
                                 ops.all(ops.isfinite(dots)))
        accept = _pairs.accept_pair(has_previous, ss, sy, yy, self.min_pair_cosine, finite)
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
            pairs_seen=state["pairs_seen"] + ops.cast(accept, "float32"),
            **({"curvature_bound": ops.where(accept, ops.maximum(
                state["curvature_bound"], yy / ops.maximum(sy, 1e-30)),
                state["curvature_bound"])} if self._hooked else {}))

    def _store_pair(self, memory, slot, s, y, accept):
        """``memory`` with rows ``slot`` and ``slot + m`` set to ``s`` and ``y`` if accepted."""
        start = [0] * len(memory.shape)
        stored = memory
        for row, index in ((s, slot), (y, slot + self.memory)):
            start[0] = index
            stored = ops.slice_update(stored, start, ops.cast(row[None], memory.dtype))
        return ops.where(accept, stored, memory)
