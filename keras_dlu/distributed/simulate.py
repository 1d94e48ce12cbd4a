"""A cost model of data-parallel training: per-layer compute measured, network alpha-beta.

Predicts the steady-state step time of Fujitsu's overlapped allreduce (Yamazaki et al.
2016, MPI Caffe; reported +46% at 16 and +71% at 64 GPUs over their baseline on AlexNet)
and of each subset of its four techniques, added one at a time:

* ``no_overlap``: back-propagation ends, then one message per layer, then the next step;
* ``backprop_overlap`` (technique 1): a layer's message starts as soon as its gradient
  exists, first come first served; the next step waits for every message;
* ``forward_overlap`` (+ technique 2): the ready message of the earliest layer goes first
  and the next forward pass of layer ``l`` waits only for layer ``l``'s message;
* ``segmented`` (+ technique 3): every tensor is split into the number of segments that
  minimises its own pipelined time (below), so copies and network steps overlap;
* ``full`` (+ technique 4, size-dependent strategy): tensors smaller than the
  latency/bandwidth crossover ``p * alpha * bandwidth`` are fused by :func:`plan_buckets`
  (the threshold is that crossover, so it depends on the worker count), and every message
  uses the cheaper algorithm for its size: recursive doubling (``ceil(log2 p)`` steps,
  latency-optimal, small fused buffers) or reduce-scatter + all-gather (ring,
  ``2 (p-1)`` steps, bandwidth-optimal, large tensors) (Thakur, Rabenseifner & Gropp 2005).
  Because fusion can delay a layer (a fused bucket waits for its last gradient), ``full``
  also evaluates the unfused plan and keeps the faster one, as an autotuner would
  (Horovod's ``HOROVOD_AUTOTUNE`` tunes the fusion threshold the same way).

Forward priority is a greedy (list-scheduling) policy, not an optimal schedule: on
adversarial layer orders (the largest tensors in the first layers) ``full`` can trail
first-come-first-served slightly; ``tests/distributed/test_simulate.py`` bounds that at 1%
on a reversed AlexNet and checks that on random models it never trails ``no_overlap`` or
``backprop_overlap``.

Data path (assumption, stated): gradients are staged through host memory, as in MPI Caffe
without CUDA-aware MPI: device-to-host copy, network allreduce, host-to-device copy. The
three stages are separate resources (two copy engines, one network port); a message's
stage starts when its previous stage has finished and the resource is free, the resource
serving ready messages in the scheme's priority order (non-preemptive list scheduling;
segments are the preemption points). ``k`` segments of a tensor therefore cost about
``sum(stages(n/k)) + (k-1) * max(stages(n/k))`` against ``sum(stages(n))`` whole; each
segment pays the per-message latency again, so the best ``k`` depends on ``p``.

Default parameters (all documented, none fitted to a result):

* ``bandwidth_bytes_per_s=6.8e9``: InfiniBand FDR 4x, 56 Gb/s signalling, 54.5 Gb/s after
  64b/66b encoding (Fujitsu's cluster used FDR InfiniBand);
* ``alpha_s=5e-6``: per-message latency of one ring step (FDR MPI ping-pong is about
  1 us; 5 us adds MPI and progress overheads, the upper end of the 1-5 us range);
* ``copy_bytes_per_s=12e9``, ``copy_latency_s=10e-6``: PCIe 3.0 x16 pinned copies (15.75
  GB/s theoretical, about 12 GB/s as commonly reported for pinned copies) and a ``cudaMemcpyAsync`` launch.

Compute: :func:`profile_layers` measures each layer on this CPU; ``compute_scale`` maps
those seconds onto the projected device (a number, or a function of the worker count for
strong scaling; ``benchmarks/distributed.py`` documents its choice). Ring allreduce of ``n``
bytes on ``p`` workers: ``2 (p-1) alpha + 2 (p-1)/p * n / bandwidth`` (Patarasuk & Yuan
2009); recursive doubling: ``ceil(log2 p) (alpha + n / bandwidth)``.
"""

import dataclasses
import math
import time

import numpy as np
import tensorflow as tf

from keras_dlu.distributed.planner import plan_buckets

SCHEMES = ("no_overlap", "backprop_overlap", "forward_overlap", "segmented", "full")
ALGORITHMS = ("ring", "recursive_doubling")


@dataclasses.dataclass(frozen=True)
class LayerProfile:
    """One layer: its gradient bytes and measured forward / backward seconds."""

    name: str
    param_bytes: int
    forward_s: float
    backward_s: float


@dataclasses.dataclass(frozen=True)
class Network:
    """Alpha-beta parameters of the network and of the host staging copies."""

    alpha_s: float = 5e-6
    bandwidth_bytes_per_s: float = 6.8e9
    copy_latency_s: float = 10e-6
    copy_bytes_per_s: float = 12e9


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


def allreduce_seconds(nbytes, workers, alpha_s, bandwidth_bytes_per_s, algorithm="ring"):
    """Allreduce time of ``nbytes`` on ``workers`` (alpha-beta model).

    ``"ring"`` (= reduce-scatter + all-gather): ``2 (p-1) alpha + 2 (p-1)/p n / bw``;
    ``"recursive_doubling"``: ``ceil(log2 p) (alpha + n / bw)``.
    """
    if workers <= 1 or nbytes <= 0:
        return 0.0
    if algorithm == "ring":
        return (2 * (workers - 1) * alpha_s
                + 2 * (workers - 1) / workers * nbytes / bandwidth_bytes_per_s)
    if algorithm == "recursive_doubling":
        return math.ceil(math.log2(workers)) * (alpha_s + nbytes / bandwidth_bytes_per_s)
    raise ValueError(f"`algorithm` must be one of {ALGORITHMS}, got {algorithm!r}.")


def stage_seconds(nbytes, workers, network, choose_algorithm):
    """(device-to-host copy, network, host-to-device copy) seconds of one message."""
    copy = network.copy_latency_s + nbytes / network.copy_bytes_per_s
    algorithms = ALGORITHMS if choose_algorithm else ("ring",)
    net = min(allreduce_seconds(nbytes, workers, network.alpha_s,
                                network.bandwidth_bytes_per_s, a) for a in algorithms)
    return copy, net, copy


def pipelined_seconds(nbytes, segments, workers, network, choose_algorithm=False):
    """Time of one tensor sent as ``segments`` equal pipelined segments on idle resources."""
    stages = stage_seconds(nbytes / segments, workers, network, choose_algorithm)
    return sum(stages) + (segments - 1) * max(stages)


def best_segments(nbytes, workers, network, choose_algorithm=False, limit=256):
    """The segment count that minimises :func:`pipelined_seconds` (1 = do not split)."""
    return min(range(1, limit + 1),
               key=lambda k: (pipelined_seconds(nbytes, k, workers, network, choose_algorithm), k))


def _messages(profiles, scheme, workers, network, fusion_bytes):
    """(layers it carries, bytes) of every message of one step, in backward order."""
    present = [i for i, p in reversed(list(enumerate(profiles))) if p.param_bytes > 0]
    if scheme in ("no_overlap", "backprop_overlap", "forward_overlap"):
        return [((i,), profiles[i].param_bytes) for i in present]
    choose = scheme == "full"
    if fusion_bytes:
        forward = sorted(present)
        buckets = plan_buckets([profiles[i].param_bytes for i in forward], [1] * len(forward),
                               fusion_threshold_bytes=fusion_bytes, first_bucket_bytes=fusion_bytes,
                               large_tensor_bytes=fusion_bytes, segment_bytes=2**62)
        units = [(tuple(forward[i] for i in b.variable_indices), b.nbytes) for b in buckets]
    else:
        units = [((i,), profiles[i].param_bytes) for i in present]
    messages = []
    for carried, nbytes in units:
        k = best_segments(nbytes, workers, network, choose)
        messages += [(carried, nbytes / k)] * k
    return messages


def _list_schedule(jobs, free_at):
    """Non-preemptive priority list scheduling on one resource.

    ``jobs``: list of (release, priority, duration); returns (finish times, resource free).
    """
    finish = [0.0] * len(jobs)
    pending = list(range(len(jobs)))
    while pending:
        ready = [j for j in pending if jobs[j][0] <= free_at]
        if ready:
            choice = min(ready, key=lambda j: (jobs[j][1], j))
        else:
            choice = min(pending, key=lambda j: (jobs[j][0], jobs[j][1], j))
        pending.remove(choice)
        free_at = max(free_at, jobs[choice][0]) + jobs[choice][2]
        finish[choice] = free_at
    return finish, free_at


def step_seconds(profiles, scheme, workers, network=Network(), fusion_bytes=None, steps=4):
    """Steady-state seconds between two consecutive steps' starts under ``scheme``."""
    if scheme not in SCHEMES:
        raise ValueError(f"`scheme` must be one of {SCHEMES}, got {scheme!r}.")
    messages = _messages(profiles, scheme, workers, network, fusion_bytes)
    durations = [stage_seconds(n, workers, network, scheme == "full") for _, n in messages]
    gated = scheme in ("forward_overlap", "segmented", "full")
    layers = len(profiles)
    update_ready, free, starts, t = [0.0] * layers, [0.0, 0.0, 0.0], [], 0.0
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
        finish = [t if scheme == "no_overlap" else max(grad_ready[i] for i in carried)
                  for carried, _ in messages]
        for stage in range(3):
            jobs = [(finish[m], min(carried) if gated else finish[m], durations[m][stage])
                    for m, (carried, _) in enumerate(messages)]
            finish, free[stage] = _list_schedule(jobs, free[stage])
        done = {}
        for (carried, _), end in zip(messages, finish):
            for layer in carried:
                done[layer] = max(done.get(layer, t), end)
        last = max([t, *done.values()])
        update_ready = [done.get(layer, t) if gated else last for layer in range(layers)]
    return starts[-1] - starts[-2]


def simulate(profiles, workers=(8, 16, 64), alpha_s=5e-6, bandwidth_bytes_per_s=6.8e9,
             compute_scale=1.0, copy_latency_s=10e-6, copy_bytes_per_s=12e9):
    """Predicts the step time of each scheme at each worker count.

    Args:
        profiles: :class:`LayerProfile` list (from :func:`profile_layers`).
        workers: worker counts to predict (default 8, 16, 64).
        alpha_s: per-message latency of one network step (default 5 us, see module doc).
        bandwidth_bytes_per_s: link bandwidth (default 6.8e9, 56 Gb/s FDR InfiniBand).
        compute_scale: multiplies the measured compute times: a number, or a function of
            the worker count (e.g. strong scaling: a fixed global batch split over workers).
        copy_latency_s, copy_bytes_per_s: host staging copies (default 10 us, 12 GB/s).

    Returns:
        ``{workers: {"single_s", "<scheme>_s" for each of SCHEMES,
        "fusion_threshold_bytes", "gain_full_vs_no_overlap", "efficiency_full"}}``;
        gain is ``no_overlap / full - 1``; ``single_s`` is the compute of one worker's
        share, so ``efficiency_full = single_s / full_s``.
    """
    if alpha_s < 0 or not bandwidth_bytes_per_s > 0 or not copy_bytes_per_s > 0 \
            or copy_latency_s < 0:
        raise ValueError("`alpha_s` and `copy_latency_s` must be >= 0, "
                         "`bandwidth_bytes_per_s` and `copy_bytes_per_s` > 0.")
    network = Network(alpha_s, bandwidth_bytes_per_s, copy_latency_s, copy_bytes_per_s)
    result = {}
    for p in workers:
        scale = compute_scale(p) if callable(compute_scale) else compute_scale
        if not scale > 0:
            raise ValueError(f"`compute_scale` must be > 0, got {scale!r}.")
        scaled = [dataclasses.replace(q, forward_s=q.forward_s * scale,
                                      backward_s=q.backward_s * scale) for q in profiles]
        row = {"single_s": sum(q.forward_s + q.backward_s for q in scaled)}
        for scheme in SCHEMES[:-1]:
            row[f"{scheme}_s"] = step_seconds(scaled, scheme, p, network)
        crossover = max(1, int(p * alpha_s * bandwidth_bytes_per_s))
        fused = step_seconds(scaled, "full", p, network, fusion_bytes=crossover)
        unfused = step_seconds(scaled, "full", p, network)
        row["full_s"] = min(fused, unfused)
        row["fusion_threshold_bytes"] = crossover if fused <= unfused else 0
        row["gain_full_vs_no_overlap"] = row["no_overlap_s"] / row["full_s"] - 1
        row["efficiency_full"] = row["single_s"] / row["full_s"]
        result[p] = row
    return result
