"""``DistributedOptimizer``: a Keras 3 optimizer wrapper that averages gradients over ranks.

Reference: Fujitsu's overlapped allreduce with tensor fusion (Yamazaki et al. 2016, MPI
Caffe), rebuilt on Horovod (Sergeev & Del Balso 2018). Horovod's own
``horovod.tensorflow.keras.DistributedOptimizer`` silently never averages under Keras 3;
this one does, and its tests prove it against single-process training.

How it overlaps: inside the traced train step, gradients are planned into buckets
(:mod:`keras_dlu.distributed.planner`) and one asynchronous Horovod collective is emitted
per bucket. Each collective depends only on its own bucket's gradients, so TensorFlow's
executor launches it as soon as back-propagation has produced them (last layers first)
while earlier layers are still differentiating; each variable's update depends only on
its own bucket, so with ``priority="forward"`` the first layers' weights are updated as
soon as their (small, early-fused) buckets arrive, without waiting for the rest. For the
next step's forward pass to use that, several steps must share one traced graph:
``compile(steps_per_execution=K)`` with the :class:`keras_dlu.callbacks.ForwardOverlap`
callback (:mod:`keras_dlu.distributed.overlap`).
"""

import keras
import tensorflow as tf

from keras_dlu.distributed import api
from keras_dlu.distributed.planner import (CHAINED, check_positive_bytes, check_strategy,
                                           plan_buckets, resolve_strategy)

PRIORITIES = ("forward", "after_all")
COMPRESSIONS = (None, "fp16")
MiB = 2**20
# Up to this many ranks, ``compression="fp16"`` all-gathers the float16 payloads and averages
# them in TensorFlow in float32: at 2 ranks an all-gather moves exactly the bytes of a ring
# allreduce (each rank sends its payload once), and the sum avoids gloo's scalar float16
# reduction, which Horovod's timeline shows taking several times the all-gather's wire time
# (README, "Emulated link"). Above, an all-gather moves ranks / 2 times the ring's bytes.
FP16_GATHER_MAX_RANKS = 2


@keras.saving.register_keras_serializable(package="keras_dlu")
class DistributedOptimizer(keras.optimizers.Optimizer):
    """Averages gradients over all Horovod ranks, then applies the wrapped optimizer.

    Use it in ``model.compile(optimizer=DistributedOptimizer(keras.optimizers.Adam()))``
    after ``keras_dlu.distributed.init()``, with the
    :class:`keras_dlu.callbacks.BroadcastGlobalVariables` callback so every rank starts
    from root's weights. Compile with ``jit_compile=False`` on GPUs (Horovod ops are not
    XLA ops; CPU-only machines never use XLA by default).

    Identity: the class attribute ``is_distributed_wrapper = True`` marks optimizers that
    communicate between processes (graph rewriters such as
    ``keras_dlu.callbacks.MemoryOptimizer`` refuse to rewrite under them); the wrapped
    optimizer is ``inner_optimizer``.

    Args:
        optimizer: the Keras 3 optimizer to wrap (an instance, or anything
            ``keras.optimizers.get`` accepts): Adam, SGD, SDProp, Proxtone,
            ``LossScaleOptimizer``...
        fusion_threshold_bytes: largest fused bucket of small gradients (default 4 MiB:
            buckets leave while back-propagation continues instead of one bucket at its
            end; buckets that are ready together are fused again in Horovod's buffer, so
            small buckets cost little. ``benchmarks/distributed.py`` compares 25 MiB).
        first_bucket_bytes: largest first bucket, launched first (default 1 MiB).
        last_bucket_bytes: largest last bucket, the first layers' gradients (default
            256 KiB, or ``None``: no cap). It leaves only when back-propagation ends and
            the next forward pass needs it first, so nothing hides it; capping it sends the
            layers above it earlier, while the first layers still differentiate.
        priority: ``"forward"`` (default): each variable is updated as soon as its bucket
            is averaged; ``"after_all"``: updates wait for every bucket (the classic
            non-overlapped update, kept as a baseline).
        chain_segment_bytes: a gradient of at least ``fusion_threshold_bytes`` (the CNN's
            dense kernel) travels as a chain of segments of this size, each launched when
            the previous one has arrived (e.g. ``MiB``; default ``None``: one collective).
            Horovod runs one collective at a time, so while it is sent whole the first
            layers' bucket, which the next forward pass needs first, waits for all of it;
            chained, that bucket goes at the end of the segment on the wire. Off by
            default: on the 2-core emulated 1 Gbit/s link it measured no gain (README).
        large_tensor_bytes: gradients at least this large are segmented instead of fused
            (default 64 MiB).
        large_tensor_strategy: ``"auto"`` (default: ``"allreduce"`` at 2 ranks or fewer,
            ``"reduce_scatter"`` above), ``"reduce_scatter"`` (reduce-scatter then
            all-gather each segment) or ``"allreduce"`` (allreduce each segment).
        segment_bytes: segment size of large gradients (default 16 MiB).
        compression: ``None`` (default) or ``"fp16"``: float gradients travel as float16,
            half the bytes (pays on slow links); at 2 ranks they are all-gathered and
            averaged in float32 by TensorFlow, above by a float16 allreduce.
        backward_passes_per_step: gradients of this many steps are accumulated locally
            before one averaged update (default 1).
        name: optimizer name (default ``"distributed_optimizer"``).
    """

    is_distributed_wrapper = True

    def __init__(self, optimizer, fusion_threshold_bytes=4 * MiB, first_bucket_bytes=MiB,
                 last_bucket_bytes=MiB // 4, chain_segment_bytes=None, priority="forward",
                 large_tensor_bytes=64 * MiB,
                 large_tensor_strategy="auto", segment_bytes=16 * MiB,
                 compression=None, backward_passes_per_step=1, name=None, **kwargs):
        if isinstance(optimizer, DistributedOptimizer):
            raise ValueError("`optimizer` is already a DistributedOptimizer; wrap it once.")
        if not isinstance(optimizer, keras.optimizers.Optimizer):
            try:
                optimizer = keras.optimizers.get(optimizer)
            except (ValueError, TypeError) as error:
                raise ValueError(f"`optimizer` must be a Keras 3 optimizer, got {optimizer!r}"
                                 ) from error
        sizes = {name: check_positive_bytes(name, value) for name, value in (
            ("fusion_threshold_bytes", fusion_threshold_bytes),
            ("first_bucket_bytes", first_bucket_bytes), ("large_tensor_bytes", large_tensor_bytes),
            ("segment_bytes", segment_bytes))}
        last_bucket_bytes, chain_segment_bytes = (
            check_positive_bytes(name, value, allow_none=True) for name, value in (
                ("last_bucket_bytes", last_bucket_bytes),
                ("chain_segment_bytes", chain_segment_bytes)))
        check_strategy(large_tensor_strategy, allow_auto=True)
        if priority not in PRIORITIES:
            raise ValueError(f"`priority` must be one of {PRIORITIES}, got {priority!r}.")
        if compression == "none":
            compression = None
        if compression not in COMPRESSIONS:
            raise ValueError(f"`compression` must be one of {COMPRESSIONS}, got {compression!r}.")
        if isinstance(backward_passes_per_step, bool) or not isinstance(
                backward_passes_per_step, int) or backward_passes_per_step < 1:
            raise ValueError("`backward_passes_per_step` must be an integer >= 1, got "
                             f"{backward_passes_per_step!r}.")
        if kwargs:
            raise ValueError(f"DistributedOptimizer does not take {sorted(kwargs)}; set them "
                             "on the wrapped optimizer.")
        super().__init__(learning_rate=0.0, name=name or "distributed_optimizer")
        self.inner_optimizer = optimizer
        self._fusion = sizes["fusion_threshold_bytes"]
        self._first = sizes["first_bucket_bytes"]
        self._last = last_bucket_bytes
        self._chain = chain_segment_bytes
        self._large = sizes["large_tensor_bytes"]
        self._segment = sizes["segment_bytes"]
        self._strategy = large_tensor_strategy
        self.priority = priority
        self.compression = compression
        self.backward_passes_per_step = backward_passes_per_step
        self._shapes_checked = False

    # ----------------------------------------------------------------- delegation
    @property
    def learning_rate(self):
        return self.inner_optimizer.learning_rate

    @learning_rate.setter
    def learning_rate(self, value):
        self.inner_optimizer.learning_rate = value

    @property
    def iterations(self):
        return self.inner_optimizer.iterations

    @property
    def variables(self):
        return self._variables[:] + self.inner_optimizer.variables

    def scale_loss(self, loss):
        return self.inner_optimizer.scale_loss(loss)

    def finalize_variable_values(self, var_list):
        self.inner_optimizer.finalize_variable_values(var_list)

    # ----------------------------------------------------------------- building
    def build(self, var_list):
        self._shapes_checked = False
        if api.is_initialized():  # else checked at the first apply (load_model may build)
            self._check_shapes(var_list)
        if self.backward_passes_per_step > 1:
            self._accumulators = [
                self.add_variable_from_reference(v, name="grad_accumulator") for v in var_list]
            self._pass_counter = self.add_variable(shape=(), dtype="int64",
                                                   initializer="zeros", name="pass_counter")
        self.inner_optimizer.build(var_list)
        super().build(var_list)

    # ----------------------------------------------------------------- applying
    def apply(self, grads, trainable_variables=None):
        hvd = api.require_initialized("DistributedOptimizer")
        if trainable_variables is None:
            trainable_variables = self._trainable_variables
        trainable_variables = list(trainable_variables)
        grads = list(grads)
        if not self.built:
            self.build(trainable_variables)
        if not self._shapes_checked:
            self._check_shapes(trainable_variables)
        if self.backward_passes_per_step == 1:
            averaged = self.average_gradients(hvd, grads)
            return self._apply_inner(averaged, trainable_variables)
        return self._accumulate_then_apply(hvd, grads, trainable_variables)

    def _check_shapes(self, var_list):
        with tf.init_scope():  # eager even while the train step is being traced
            check_same_shapes(api.require_initialized("DistributedOptimizer"), var_list)
        self._shapes_checked = True

    def _apply_inner(self, grads, trainable_variables):
        if self.priority == "after_all":
            present = [g for g in grads if g is not None]
            with tf.control_dependencies(present):
                grads = [None if g is None else tf.identity(g) for g in grads]
        self.inner_optimizer.apply(grads, trainable_variables)

    def _accumulate_then_apply(self, hvd, grads, trainable_variables):
        indices = {self._var_key(v): i for i, v in enumerate(self._trainable_variables)}
        slots = [self._accumulators[indices[self._var_key(v)]] for v in trainable_variables]
        for slot, grad in zip(slots, grads):
            if grad is not None:
                slot.assign_add(tf.cast(grad, slot.dtype))
        self._pass_counter.assign_add(1)
        passes = self.backward_passes_per_step

        def reduce_and_apply():
            mean = [None if g is None else slot.value / passes for slot, g in zip(slots, grads)]
            self._apply_inner(self.average_gradients(hvd, mean), trainable_variables)
            for slot in slots:
                slot.assign(tf.zeros_like(slot.value))
            return tf.constant(True)

        tf.cond(tf.equal(self._pass_counter.value % passes, 0), reduce_and_apply,
                lambda: tf.constant(False))

    def plan(self, grads):
        """The bucket plan for these gradients (``None`` entries are skipped)."""
        present = [i for i, g in enumerate(grads) if g is not None]
        sizes = [int(tf.size(grads[i])) if not grads[i].shape.is_fully_defined()
                 else grads[i].shape.num_elements() for i in present]
        itemsizes = [tf.as_dtype(grads[i].dtype).size for i in present]
        ranks = api.size() if api.is_initialized() else 1
        buckets = plan_buckets(sizes, itemsizes, self._fusion, self._first, self._large,
                               self._segment, resolve_strategy(self._strategy, ranks),
                               last_bucket_bytes=self._last, chain_segment_bytes=self._chain)
        return present, buckets

    def average_gradients(self, hvd, grads):
        """Averages ``grads`` over all ranks, one collective per planned bucket."""
        if hvd.size() == 1:
            return list(grads)
        for i, grad in enumerate(grads):
            if isinstance(grad, tf.IndexedSlices):
                grads[i] = tf.convert_to_tensor(grad)
        present, buckets = self.plan(grads)
        flat = {p: tf.reshape(grads[p], [-1]) for p in present}
        pieces = {p: [] for p in present}
        for bucket in buckets:
            parts = [flat[present[s.index]][s.start:s.stop] for s in bucket.segments]
            if bucket.kind == CHAINED and pieces[present[bucket.segments[0].index]]:
                parts = chained_after(pieces[present[bucket.segments[0].index]][-1][1], parts)
            reduced = self._reduce_bucket(hvd, bucket, parts)
            for segment, part in zip(bucket.segments, reduced):
                pieces[present[segment.index]].append((segment.start, part))
        averaged = list(grads)
        for p in present:
            parts = [part for _, part in sorted(pieces[p], key=lambda item: item[0])]
            joined = parts[0] if len(parts) == 1 else tf.concat(parts, 0)
            averaged[p] = tf.reshape(joined, tf.shape(grads[p]))
        return averaged

    def _reduce_bucket(self, hvd, bucket, parts):
        dtype = parts[0].dtype
        name = bucket.name()
        wire = tf.float16 if self.compression == "fp16" and dtype.is_floating else dtype
        if wire != dtype and hvd.size() <= FP16_GATHER_MAX_RANKS:
            return self._gather_average(hvd, name, [tf.cast(part, wire) for part in parts], dtype)
        if bucket.kind == "fused":
            # One grouped allreduce: Horovod fuses the group in its own fusion buffer (a
            # single negotiated collective), so no tf.concat / tf.split copies here.
            wired = [tf.cast(part, wire) for part in parts]
            if len(wired) == 1:
                out = [hvd.allreduce(wired[0], op=hvd.Average, name=name,
                                     ignore_name_scope=True)]
            else:
                out = hvd.grouped_allreduce(wired, op=hvd.Average, name=name,
                                            ignore_name_scope=True)
            return [tf.cast(o, dtype) for o in out]
        part = tf.cast(parts[0], wire)
        if bucket.kind in ("allreduce", CHAINED):
            out = hvd.allreduce(part, op=hvd.Average, name=name, ignore_name_scope=True)
            return [tf.cast(out, dtype)]
        count = bucket.segments[0].stop - bucket.segments[0].start
        ranks = hvd.size()
        padded = -(-count // ranks) * ranks
        part = tf.pad(part, [[0, padded - count]])
        shard = hvd.reducescatter(part, op=hvd.Average, name=name + ".rs",
                                  ignore_name_scope=True)
        full = hvd.allgather(shard, name=name + ".ag", ignore_name_scope=True)
        return [tf.cast(full[:count], dtype)]

    @staticmethod
    def _gather_average(hvd, name, wired, dtype):
        """All-gathers the (flat, compressed) ``wired`` parts; their means in ``dtype``.

        Every rank receives the same rows in rank order and sums them in the same order, so
        all ranks end bit-identical."""
        if len(wired) == 1:
            gathered = [hvd.allgather(wired[0], name=name, ignore_name_scope=True)]
        else:
            gathered = hvd.grouped_allgather(wired, name=name, ignore_name_scope=True)
        ranks = hvd.size()
        return [tf.reduce_mean(tf.reshape(tf.cast(g, dtype), [ranks, -1]), axis=0)
                for g in gathered]

    # ----------------------------------------------------------------- config
    def get_config(self):
        return {
            "name": self.name,
            "optimizer": keras.saving.serialize_keras_object(self.inner_optimizer),
            "fusion_threshold_bytes": self._fusion,
            "first_bucket_bytes": self._first,
            "last_bucket_bytes": self._last,
            "chain_segment_bytes": self._chain,
            "priority": self.priority,
            "large_tensor_bytes": self._large,
            "large_tensor_strategy": self._strategy,
            "segment_bytes": self._segment,
            "compression": self.compression,
            "backward_passes_per_step": self.backward_passes_per_step,
        }

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        inner = keras.saving.deserialize_keras_object(config.pop("optimizer"),
                                                      custom_objects=custom_objects)
        return cls(inner, **config)


def chained_after(previous, parts):
    """``parts``, readable only once ``previous`` (the chain's last averaged segment) exists:
    the collective that takes them is launched, and enters Horovod's queue, only then."""
    with tf.control_dependencies([previous]):
        return [tf.identity(part) for part in parts]


def check_same_shapes(hvd, var_list):
    """Raises ``ValueError`` naming the first variable whose shape differs between ranks.

    One ``allgather_object`` of every rank's shapes; runs before the first collective so
    that mismatched models fail with a message instead of a mismatched or hung allreduce.
    """
    if hvd.size() == 1:
        return
    local = [(getattr(v, "path", v.name), tuple(v.shape)) for v in var_list]
    gathered = hvd.allgather_object([shape for _, shape in local], name="kdlu.shape_check")
    for other_rank, shapes in enumerate(gathered):
        if len(shapes) != len(local):
            raise ValueError(
                f"DistributedOptimizer: rank {hvd.rank()} has {len(local)} trainable variables "
                f"but rank {other_rank} has {len(shapes)}; every rank must build the same model.")
        for (path, shape), other in zip(local, shapes):
            if tuple(other) != shape:
                raise ValueError(
                    f"DistributedOptimizer: variable '{path}' has shape {shape} on rank "
                    f"{hvd.rank()} but {tuple(other)} on rank {other_rank}; every rank must "
                    "build the same model.")
