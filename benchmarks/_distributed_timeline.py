"""Reads a Horovod timeline (``HOROVOD_TIMELINE``) for benchmarks/distributed.py.

Horovod's coordinator (rank 0) writes a Chrome-trace JSON: one "process" per tensor name,
``NEGOTIATE_ALLREDUCE`` starting when rank 0 enqueued the tensor (its gradient exists),
and inside ``ALLREDUCE`` the ``GLOO_ALLREDUCE`` activity, the time the data is on the wire.
Timestamps are microseconds since ``start_time_since_epoch_in_micros`` (metadata), which
aligns them with ``time.time()`` marks taken by the benchmark around each case.
"""

import json

# Eager Horovod calls appear under their op's name, whatever ``name=`` they were given: the
# benchmark's barrier between cases (an eager allreduce) and the start-up broadcasts and
# shape check. The training steps' collectives are traced and carry their own names.
EAGER_NAMES = ("HorovodAllreduce", "HorovodAllgather", "HorovodBroadcast")


def load(path):
    """(events, epoch seconds of ts 0). Tolerates a trace left without its closing bracket."""
    with open(path) as f:
        text = f.read().rstrip().rstrip(",")
    events = json.loads(text if text.endswith("]") else text + "]")
    start = next(e["args"]["start_time_since_epoch_in_micros"] for e in events
                 if "start_time_since_epoch_in_micros" in e.get("args", {}))
    return events, start / 1e6


def activities(events, epoch_start, window):
    """Within ``window`` (epoch seconds ``(lo, hi)``): ``ready`` (rank 0's enqueue times, one
    per tensor), ``wire`` (``(start, end)`` of each collective Horovod ran, its ``GLOO_*``
    activity) and ``waiting`` (``NEGOTIATE_*`` phases: rank 0 has enqueued the tensor, the
    other rank not yet), in seconds from ``lo``, sorted and merged.

    Rank 0's enqueue is stamped when Horovod's background thread reads it, which it does not
    while it runs a collective, so a negotiation never overlaps the wire."""
    lo, hi = window
    names = {e["pid"]: e["args"]["name"] for e in events
             if e.get("name") == "process_name" and "name" in e.get("args", {})}
    stacks, ready, wire, waiting = {}, [], set(), set()
    for event in events:
        if "ts" not in event:
            continue
        t = epoch_start + event["ts"] / 1e6
        if event["ph"] == "B":
            stacks.setdefault(event["pid"], []).append((event["name"], t))
        elif event["ph"] == "E" and stacks.get(event["pid"]):
            name, begin = stacks[event["pid"]].pop()
            if not lo <= begin <= hi or names.get(event["pid"]) in EAGER_NAMES:
                continue
            if name.startswith("NEGOTIATE_"):
                ready.append(begin - lo)
                waiting.add((begin - lo, t - lo))
            elif name.startswith("GLOO_"):
                wire.add((begin - lo, t - lo))
    return sorted(ready), merged(wire), merged(waiting)


def merged(intervals):
    """Overlapping intervals joined: the tensors of one fused response share one activity
    (Horovod runs responses one after another, so distinct responses never overlap)."""
    out = []
    for start, stop in sorted(intervals):
        if out and start < out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], stop))
        else:
            out.append((start, stop))
    return out


def union_seconds(intervals):
    """Total length of the union of ``(start, end)`` intervals."""
    total, end = 0.0, float("-inf")
    for start, stop in sorted(intervals):
        if stop > end:
            total += stop - max(start, end)
            end = stop
    return total


def plot(cases, path, title):
    """One panel per case: wire activity (bars) and gradients ready on rank 0 (ticks).

    ``cases``: ``{label: (ready, wire, step_s)}`` with times in seconds from the window start.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(len(cases), 1, figsize=(10, 1.8 * len(cases) + 0.6),
                                squeeze=False)
    for ax, (label, (ready, wire, step_s)) in zip(axes[:, 0], cases.items()):
        ax.broken_barh([(s * 1e3, (e - s) * 1e3) for s, e in wire], (0.1, 0.35),
                       color="tab:orange", label="communication (gloo allreduce on the wire)")
        ax.vlines([r * 1e3 for r in ready], 0.55, 0.95, color="tab:blue", linewidth=0.8,
                  label="gradient ready on rank 0 (back-propagation progress)")
        ax.set_yticks([])
        ax.set_xlim(0, max([e for _, e in wire] + ready + [step_s]) * 1e3)
        ax.set_title(f"{label}: {step_s * 1e3:.0f} ms per step", fontsize=9, loc="left")
    axes[-1, 0].set_xlabel("ms")
    axes[0, 0].legend(loc="upper right", fontsize=7)
    figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
