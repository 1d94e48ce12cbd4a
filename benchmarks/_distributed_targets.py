"""Issue 15's targets for benchmarks/distributed.py: the hidden share of communication from
the timeline launch, and the "targets" list of the JSON line."""

COMPUTE_ONLY = ("local", "local_loop")  # cases without communication


def target(measure, ours, peer, peer_value, goal, higher_is_better=True):
    """One entry of the "targets" list; ``ratio`` = ours / peer (or peer / ours for times)."""
    ratio = None
    if ours is not None and peer_value:
        ratio = ours / peer_value
    bound = float(goal.split()[-1].rstrip("x%")) / (100 if goal.endswith("%") else 1)
    met = None if ratio is None else bool(ratio >= bound if higher_is_better else ratio <= bound)
    return {"measure": measure, "ours": ours, "peer": peer, "peer_value": peer_value,
            "ratio": ratio, "target": goal, "met": met}


def hidden_shares(line, profile):
    """Share of each case's wire time hidden behind computation, from the timeline launch
    ``profile`` (:func:`timeline_profile`); into ``line``."""
    p, comm = profile["seconds_per_step"], profile["wire"]
    cases = [case for case in p if comm[case] > 0 and case.split("/")[1] not in COMPUTE_ONLY]
    unclipped = {case.split("/")[1]: 1 - (p[case] - p[compute_only(case)]) / comm[case]
                 for case in cases}
    line["hidden_share"] = {k: max(0.0, min(1.0, v)) for k, v in unclipped.items()}
    line["hidden_share_unclipped"] = unclipped
    line["hidden_share_method"] = (
        "1 - (t_step - t_local) / t_wire, clipped to [0, 1], all from the timeline launch: "
        "t_wire the union of Horovod's GLOO_* (allreduce, allgather) activities per step in "
        "its timeline, "
        "t_local the same training without communication, interleaved with the others: "
        "fit (local) for the fit cases, the raw tf.function loop (local_loop) for the tape loops")
    return line["hidden_share"]


def compute_only(case):
    """The compute-only peer of ``case``: the raw loop for the tape loops, fit otherwise."""
    model, name = case.split("/")
    return f"{model}/local_loop" if name in ("tape", "tape_fp16") else f"{model}/local"


def targets(line, runs, rates, best_tape, hidden):
    """The "targets" list: issue 15's targets, met null where not measured."""
    slow = rates[0]
    s_slow = runs[slow]["seconds_per_step"]
    mwms_s = line["cnn_mwms_ms"] and line["cnn_mwms_ms"] / 1e3
    entries = []
    for label, case in (("ForwardOverlap", "ours_overlap"),
                        ("ForwardOverlap, fp16 wire", "ours_overlap_fp16")):
        ours = 1 / s_slow[f"cnn/{case}"]
        prefix = f"CNN {slow}: our fit ({label}) throughput"
        entries += [
            target(f"{prefix} / best tape loop of the grid", ours,
                   "horovod DistributedGradientTape loop", 1 / best_tape, ">= 1.3x"),
            target(f"{prefix} / tape in a fit train_step", ours, "horovod tape in fit",
                   1 / s_slow["cnn/tape_fit"], ">= 1.3x"),
            target(f"{prefix} / MultiWorkerMirroredStrategy", ours, "MWMS loop",
                   1 / mwms_s if mwms_s else None, ">= 1.3x"),
            {"measure": f"CNN {slow}: communication hidden behind computation, {label} "
                        "(timeline)",
             "ours": hidden.get(case), "peer": "horovod tape loop",
             "peer_value": hidden.get("tape"), "ratio": None, "target": ">= 60%",
             "met": None if case not in hidden else hidden[case] >= 0.6}]
    for rate in rates[1:]:
        s = runs[rate]["seconds_per_step"]
        entries.append(target(f"CNN {rate}: our fit (ForwardOverlap) throughput / tape loop",
                              1 / s["cnn/ours_overlap"], "horovod tape loop",
                              1 / s["cnn/tape"], ">= 1.0x"))
    for workers, goal in ((16, 1.46), (64, 1.71)):
        entries.append(target(f"simulate AlexNet: gain over no overlap, {workers} workers",
                              1 + line[f"sim_alexnet_{workers}_gain_vs_no_overlap"],
                              "no overlap", 1.0, f">= {goal}x"))
    for key, c in line["simulate_vs_emulated_link"].items():
        entries.append(
            {"measure": f"simulate vs emulated link, CNN {key}: predicted / measured step time",
             "ours": c["predicted_ms"], "peer": "measured", "peer_value": c["measured_ms"],
             "ratio": c["predicted_over_measured"], "target": "within 15% (0.85x-1.15x)",
             "met": abs(c["predicted_over_measured"] - 1) <= 0.15})
    return entries
