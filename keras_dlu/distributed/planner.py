"""The bucket planner: which gradients travel together, in which order, by which method.

Implements the size-dependent strategy of Fujitsu's overlapped allreduce (Yamazaki et al.
2016, on MPI Caffe; here on Horovod):

* gradients are visited in reverse layer order (the order back-propagation produces them),
  so the first bucket can be launched while earlier layers are still differentiating;
* small tensors are fused into one contiguous buffer up to ``fusion_threshold_bytes``
  (the first bucket is capped at ``first_bucket_bytes`` so communication starts early,
  as PyTorch DDP's 1 MB first bucket);
* the last bucket, the first layers' gradients, is capped at ``last_bucket_bytes``: it
  can only leave when back-propagation ends and the next forward pass needs it first, so
  it is the one collective nothing hides; the layers above it leave earlier in their own
  bucket, while the first layers are still differentiating;
* a tensor of at least ``fusion_threshold_bytes`` (below ``large_tensor_bytes``) travels as
  a chain of ``chain_segment_bytes`` segments, each launched when the previous one has
  arrived (``"chained"``): Horovod runs one collective at a time, so a big dense kernel sent
  whole keeps the first layers' bucket, produced meanwhile and needed first by the next
  forward pass, waiting for all of it; chained, that bucket goes at the next segment's end;
* a tensor of at least ``large_tensor_bytes`` travels alone, split into segments of
  ``segment_bytes`` (pipelining), each reduced either by allreduce or by reduce-scatter
  followed by all-gather (``large_tensor_strategy``), which spreads the averaging work
  over the ranks.

The plan depends only on the variables' positions, shapes and dtypes, so every rank
derives the same plan and the same collective names from it.
"""

import dataclasses
import math

LARGE_TENSOR_STRATEGIES = ("reduce_scatter", "allreduce")
AUTO = "auto"
CHAINED = "chained"
# At most this many ranks, "auto" sends large tensors by plain allreduce: a ring allreduce is
# already reduce-scatter + all-gather inside gloo/NCCL, so the explicit pair only adds a
# second collective, a negotiation and a pad per segment.
AUTO_ALLREDUCE_MAX_RANKS = 2


@dataclasses.dataclass(frozen=True)
class Segment:
    """Elements ``[start, stop)`` of the flattened gradient of variable ``index``."""

    index: int
    start: int
    stop: int


@dataclasses.dataclass(frozen=True)
class Bucket:
    """One collective launch.

    Attributes:
        number: position in launch order (0 is launched first).
        kind: ``"fused"`` (several whole small tensors, one grouped allreduce fused in
            Horovod's buffer), ``"chained"`` (one segment of a tensor of at least the
            fusion threshold, launched after the tensor's previous segment has arrived),
            ``"allreduce"`` or ``"reduce_scatter"`` (one segment of a large tensor).
        segments: the pieces of flattened gradients the bucket carries.
        nbytes: payload size in bytes.
    """

    number: int
    kind: str
    segments: tuple
    nbytes: int

    @property
    def variable_indices(self):
        return sorted({segment.index for segment in self.segments})

    def name(self, prefix="kdlu"):
        """A collective name that is equal on every rank (positions only, no layer names)."""
        first = self.segments[0]
        return (f"{prefix}.b{self.number}.{self.kind}.v{first.index}"
                f".e{first.start}-{self.segments[-1].stop}.n{len(self.segments)}")


def check_positive_bytes(name, value, allow_none=False):
    """Validates a byte-size argument; raises ``ValueError`` naming it."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0 \
            or (isinstance(value, float) and not math.isfinite(value)):
        raise ValueError(f"`{name}` must be a positive number of bytes, got {value!r}.")
    return int(value)


def check_strategy(value, allow_auto=False):
    allowed = LARGE_TENSOR_STRATEGIES + ((AUTO,) if allow_auto else ())
    if value not in allowed:
        raise ValueError(f"`large_tensor_strategy` must be one of {allowed}, got {value!r}.")
    return value


def resolve_strategy(value, ranks):
    """``"auto"`` -> ``"allreduce"`` at ``ranks <= AUTO_ALLREDUCE_MAX_RANKS``, else
    ``"reduce_scatter"``; an explicit strategy is returned unchanged."""
    check_strategy(value, allow_auto=True)
    if isinstance(ranks, bool) or not isinstance(ranks, int) or ranks < 1:
        raise ValueError(f"`ranks` must be a positive integer, got {ranks!r}.")
    if value != AUTO:
        return value
    return "allreduce" if ranks <= AUTO_ALLREDUCE_MAX_RANKS else "reduce_scatter"


def plan_buckets(tensor_sizes, itemsizes, fusion_threshold_bytes=4 * 2**20,
                 first_bucket_bytes=2**20, large_tensor_bytes=64 * 2**20,
                 segment_bytes=16 * 2**20, large_tensor_strategy="reduce_scatter",
                 last_bucket_bytes=None, chain_segment_bytes=None):
    """Plans the buckets of one step.

    Args:
        tensor_sizes: number of elements of each gradient, in ``trainable_variables``
            order (forward layer order).
        itemsizes: bytes per element of each gradient.
        fusion_threshold_bytes: largest fused bucket (default 4 MiB, as
            :class:`~keras_dlu.distributed.DistributedOptimizer`).
        first_bucket_bytes: largest first fused bucket (default 1 MiB).
        large_tensor_bytes: tensors at least this large are not fused but segmented
            (default 64 MiB).
        segment_bytes: segment size of large tensors (default 16 MiB).
        large_tensor_strategy: ``"reduce_scatter"`` (default) or ``"allreduce"``.
        last_bucket_bytes: largest last bucket (the first layers' gradients, launched
            last; default ``None``: no cap beyond ``fusion_threshold_bytes``).
        chain_segment_bytes: segment size of the chained tensors (those of at least
            ``fusion_threshold_bytes`` and more than this, below ``large_tensor_bytes``;
            default ``None``: such a tensor is one fused bucket).

    Returns:
        a list of :class:`Bucket` in launch order (last layers first).
    """
    if len(tensor_sizes) != len(itemsizes):
        raise ValueError("`tensor_sizes` and `itemsizes` must have the same length.")
    fusion = check_positive_bytes("fusion_threshold_bytes", fusion_threshold_bytes)
    first = check_positive_bytes("first_bucket_bytes", first_bucket_bytes)
    large = check_positive_bytes("large_tensor_bytes", large_tensor_bytes)
    segment = check_positive_bytes("segment_bytes", segment_bytes)
    check_strategy(large_tensor_strategy)
    chain = check_positive_bytes("chain_segment_bytes", chain_segment_bytes, allow_none=True)
    tail = tail_length(tensor_sizes, itemsizes, check_positive_bytes(
        "last_bucket_bytes", last_bucket_bytes, allow_none=True), large)

    buckets = []
    pending, pending_bytes, pending_itemsize = [], 0, None

    def flush():
        nonlocal pending, pending_bytes, pending_itemsize
        if pending:
            buckets.append(Bucket(len(buckets), "fused", tuple(pending), pending_bytes))
        pending, pending_bytes, pending_itemsize = [], 0, None

    for index in reversed(range(len(tensor_sizes))):
        count, itemsize = int(tensor_sizes[index]), int(itemsizes[index])
        nbytes = count * itemsize
        if count == 0:
            continue
        if nbytes >= large:  # alone, pipelined segments
            alone = (segment, large_tensor_strategy)
        elif chain is not None and nbytes >= fusion and nbytes > chain:
            alone = (chain, CHAINED)
        else:
            alone = None
        if alone:
            flush()
            buckets += segmented(index, count, itemsize, *alone, len(buckets))
            continue
        limit = first if not buckets else fusion
        if pending and (pending_bytes + nbytes > limit or itemsize != pending_itemsize
                        or index == tail - 1):
            flush()
        pending.append(Segment(index, 0, count))
        pending_bytes += nbytes
        pending_itemsize = itemsize
    flush()
    return buckets


def segmented(index, count, itemsize, segment_bytes, strategy, first_bucket_id):
    """The buckets of one tensor: consecutive segments of ``segment_bytes``, each reduced
    alone by ``strategy`` (or chained), numbered from ``first_bucket_id``."""
    per_segment = max(1, segment_bytes // itemsize)
    buckets = []
    for start in range(0, count, per_segment):
        stop = min(count, start + per_segment)
        buckets.append(Bucket(first_bucket_id + len(buckets), strategy,
                              (Segment(index, start, stop),), (stop - start) * itemsize))
    return buckets


def tail_length(tensor_sizes, itemsizes, last_bucket_bytes, large_tensor_bytes):
    """How many leading tensors (forward order) form the capped last bucket: the longest
    prefix of small tensors of at most ``last_bucket_bytes`` (0: no cap)."""
    if last_bucket_bytes is None:
        return 0
    total = 0
    for index, (count, itemsize) in enumerate(zip(tensor_sizes, itemsizes)):
        nbytes = int(count) * int(itemsize)
        if nbytes >= large_tensor_bytes or total + nbytes > last_bucket_bytes \
                or int(itemsize) != int(itemsizes[0]):
            return index
        total += nbytes
    return len(tensor_sizes)
