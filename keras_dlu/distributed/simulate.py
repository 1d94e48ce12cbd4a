"""A cost model of data-parallel training: per-layer compute measured, network alpha-beta.

Predicts the steady-state step time of three schemes at any worker count (Fujitsu,
Yamazaki et al. 2016, reported +46% at 16 and +71% at 64 GPUs of their scheme over
their baseline on AlexNet):

* ``no_overlap``: back-propagation ends, then one ring allreduce per layer, then the
  next step (the classic baseline);
* ``backprop_overlap``: each layer's allreduce starts as soon as its gradient exists
  (first come, first served on one channel); the next step waits for all of them;
* ``full``: the keras-dlu scheme: buckets from :func:`plan_buckets` (small tensors fused,
  large ones segmented), the channel always sends the ready segment of the earliest
  layer first (forward priority), and the next forward pass of layer ``l`` waits only
  for layer ``l``'s gradients.

A ring allreduce (or reduce-scatter + all-gather) of ``n`` bytes on ``p`` workers costs
``2 (p-1) alpha + 2 (p-1)/p * n / bandwidth`` (Thakur et al. 2005; Patarasuk & Yuan 2009).
"""

import dataclasses
import time

import numpy as np
import tensorflow as tf

from keras_dlu.distributed.planner import plan_buckets

SCHEMES = ("no_overlap", "backprop_overlap", "full")


@dataclasses.dataclass(frozen=True)
class LayerProfile:
    """One layer: its gradient bytes and measured forward / backward seconds."""

    name: str
    param_bytes: int
    forward_s: float
    backward_s: float


def _median_seconds(fn, repeats):
    fn()  # warm-up (traces)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def profile_layers(model, batch, repeats=5):
    """Measures each layer of a sequential ``model`` on its real input.

    Args:
        model: a Keras model whose layers run one after the other (``keras.Sequential``).
        batch: one input batch (array or tensor).
        repeats: timed repeats per layer; the median is kept (default 5).

    Returns:
        a list of :class:`LayerProfile`, in forward order.
    """
    if repeats < 1:
        raise ValueError(f"`repeats` must be >= 1, got {repeats!r}.")
    profiles = []
    x = tf.convert_to_tensor(batch)
    for layer in model.layers:
        weights = [w.value for w in layer.trainable_weights]

        @tf.function
        def forward(inputs, layer=layer):
            return layer(inputs, training=True)

        @tf.function
        def forward_backward(inputs, layer=layer, weights=weights):
            with tf.GradientTape() as tape:
                tape.watch(inputs)
                out = layer(inputs, training=True)
                loss = tf.reduce_sum(tf.cast(out, tf.float32))
            return tape.gradient(loss, [inputs, *weights])

        f = _median_seconds(lambda: forward(x).numpy(), repeats)
        fb = _median_seconds(lambda: [g.numpy() for g in forward_backward(x) if g is not None],
                             repeats)
        nbytes = int(sum(np.prod(w.shape) * w.dtype.size for w in weights))
        profiles.append(LayerProfile(layer.name, nbytes, f, max(fb - f, 0.0)))
        x = forward(x)
    return profiles


def allreduce_seconds(nbytes, workers, alpha_s, bandwidth_bytes_per_s):
    """Ring allreduce time of ``nbytes`` on ``workers`` (alpha-beta model)."""
    if workers <= 1 or nbytes <= 0:
        return 0.0
    return 2 * (workers - 1) * alpha_s + 2 * (workers - 1) / workers * nbytes / bandwidth_bytes_per_s


def _messages(profiles, scheme, fusion_threshold_bytes, first_bucket_bytes,
              large_tensor_bytes, segment_bytes):
    """(layers it carries, bytes) of every message of one step."""
    if scheme != "full":
        return [((i,), p.param_bytes) for i, p in reversed(list(enumerate(profiles)))
                if p.param_bytes > 0]
    present = [i for i, p in enumerate(profiles) if p.param_bytes > 0]
    buckets = plan_buckets([profiles[i].param_bytes for i in present], [1] * len(present),
                           fusion_threshold_bytes, first_bucket_bytes, large_tensor_bytes,
                           segment_bytes)
    return [(tuple(present[i] for i in b.variable_indices), b.nbytes) for b in buckets]


def _steady_step_seconds(profiles, scheme, workers, alpha_s, bandwidth, plan_args, steps=4):
    messages = _messages(profiles, scheme, *plan_args)
    layers = len(profiles)
    update_ready = [0.0] * layers
    channel_free, starts = 0.0, []
    t = 0.0
    for _ in range(steps):
        for layer in range(layers):  # forward pass, gated by this layer's update
            t = max(t, update_ready[layer])
            if layer == 0:
                starts.append(t)
            t += profiles[layer].forward_s
        grad_ready = [0.0] * layers
        for layer in reversed(range(layers)):
            t += profiles[layer].backward_s
            grad_ready[layer] = t
        backward_end = t
        pending = []
        for carried, nbytes in messages:
            ready = backward_end if scheme == "no_overlap" else max(grad_ready[i] for i in carried)
            pending.append((ready, min(carried), carried, nbytes))
        done = {}
        while pending:
            ready_now = [m for m in pending if m[0] <= channel_free]
            if not ready_now:
                choice = min(pending, key=lambda m: m[0])
            elif scheme == "full":
                choice = min(ready_now, key=lambda m: m[1])  # earliest layer first
            else:
                choice = min(ready_now, key=lambda m: m[0])  # first come, first served
            pending.remove(choice)
            start = max(channel_free, choice[0])
            channel_free = start + allreduce_seconds(choice[3], workers, alpha_s, bandwidth)
            for layer in choice[2]:
                done[layer] = max(done.get(layer, 0.0), channel_free)
        all_done = max([channel_free, backward_end])
        for layer in range(layers):
            update_ready[layer] = done.get(layer, backward_end) if scheme == "full" else all_done
        t = backward_end
    return starts[-1] - starts[-2]


def simulate(profiles, workers=(8, 16, 64), alpha_s=5e-6, bandwidth_bytes_per_s=6.8e9,
             compute_scale=1.0, fusion_threshold_bytes=64 * 2**20, first_bucket_bytes=2**20,
             large_tensor_bytes=8 * 2**20, segment_bytes=4 * 2**20):
    """Predicts the step time of each scheme at each worker count.

    Args:
        profiles: :class:`LayerProfile` list (from :func:`profile_layers`).
        workers: worker counts to predict (default 8, 16, 64).
        alpha_s: per-message latency in seconds (default 5 us, InfiniBand class).
        bandwidth_bytes_per_s: link bandwidth (default 6.8e9, 56 Gb/s FDR InfiniBand as in
            Fujitsu's cluster).
        compute_scale: multiplies the measured compute times (default 1.0; e.g. 1/20 to
            project CPU-measured layers onto a device 20 times faster).
        fusion_threshold_bytes, first_bucket_bytes, large_tensor_bytes, segment_bytes:
            the planner settings of the ``full`` scheme (defaults as DistributedOptimizer).

    Returns:
        ``{workers: {"single_s", scheme_s for each scheme, "gain_full_vs_no_overlap",
        "efficiency_full"}}``; gain is ``no_overlap / full - 1``.
    """
    if alpha_s < 0 or not bandwidth_bytes_per_s > 0 or not compute_scale > 0:
        raise ValueError("`alpha_s` must be >= 0, `bandwidth_bytes_per_s` and `compute_scale` > 0.")
    scaled = [dataclasses.replace(p, forward_s=p.forward_s * compute_scale,
                                  backward_s=p.backward_s * compute_scale) for p in profiles]
    plan_args = (fusion_threshold_bytes, first_bucket_bytes, large_tensor_bytes, segment_bytes)
    single = sum(p.forward_s + p.backward_s for p in scaled)
    result = {}
    for p in workers:
        row = {"single_s": single}
        for scheme in SCHEMES:
            row[f"{scheme}_s"] = _steady_step_seconds(scaled, scheme, p, alpha_s,
                                                      bandwidth_bytes_per_s, plan_args)
        row["gain_full_vs_no_overlap"] = row["no_overlap_s"] / row["full_s"] - 1
        row["efficiency_full"] = single / row["full_s"]
        result[p] = row
    return result
