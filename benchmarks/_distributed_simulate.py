"""``simulate`` for benchmarks/distributed.py: projections to 16/64 workers, and a check of
the cost model against the emulated-link measurements of the same run.
"""

import keras
import numpy as np

# Simulation set-up (documented, not fitted): the device is a Caffe-era GPU that trains
# AlexNet at 4 ms per image (Caffe on an NVIDIA K40, caffe.berkeleyvision.org: "1 ms/image
# for inference and 4 ms/image for learning"); the per-layer CPU times measured here are
# scaled so AlexNet's total matches that, and the same CPU->device factor is applied to the
# ResNet-like model. Strong scaling: Caffe's reference AlexNet solver batch of 256 images is
# split over the workers (Fujitsu's gain grows from 16 to 64 workers, which only a shrinking
# per-worker batch produces). Network: simulate()'s documented FDR InfiniBand defaults.
SIM_DEVICE_S_PER_IMAGE = 4e-3
SIM_GLOBAL_BATCH = 256
SIM_PROFILE_BATCH = 4


def alexnet():
    """AlexNet (Krizhevsky et al. 2012, single-tower, 227x227), 61M parameters."""
    layers = keras.layers
    return keras.Sequential([
        keras.Input((227, 227, 3)), layers.Conv2D(96, 11, 4, activation="relu"),
        layers.MaxPooling2D(3, 2), layers.Conv2D(256, 5, padding="same", activation="relu"),
        layers.MaxPooling2D(3, 2), layers.Conv2D(384, 3, padding="same", activation="relu"),
        layers.Conv2D(384, 3, padding="same", activation="relu"),
        layers.Conv2D(256, 3, padding="same", activation="relu"), layers.MaxPooling2D(3, 2),
        layers.Flatten(), layers.Dense(4096, activation="relu"),
        layers.Dense(4096, activation="relu"), layers.Dense(1000)])


def resnet_like():
    """ResNet-18's convolution stack at 224x224 (3x3, 64..512 channels, stride-2 stages),
    no skips: the cost model needs only each layer's time and gradient size."""
    layers = keras.layers
    stack = [keras.Input((224, 224, 3)), layers.Conv2D(64, 7, 2, "same", activation="relu"),
             layers.MaxPooling2D(3, 2, "same")]
    for channels in (64, 128, 256, 512):
        for block in range(4):
            stride = 2 if block == 0 and channels != 64 else 1
            stack.append(layers.Conv2D(channels, 3, stride, "same", activation="relu"))
    stack += [layers.GlobalAveragePooling2D(), layers.Dense(1000)]
    return keras.Sequential(stack)


def simulations(line):
    from keras_dlu.distributed.simulate import profile_layers, simulate

    batch = {size: np.random.default_rng(0).normal(size=(SIM_PROFILE_BATCH, size, size, 3))
             .astype("float32") for size in (227, 224)}
    profiles = {"alexnet": profile_layers(alexnet(), batch[227], repeats=2),
                "resnet_like": profile_layers(resnet_like(), batch[224], repeats=2)}
    measured = sum(p.forward_s + p.backward_s for p in profiles["alexnet"]) / SIM_PROFILE_BATCH
    device_factor = SIM_DEVICE_S_PER_IMAGE / measured  # CPU seconds -> device seconds

    def scale(workers):
        return device_factor * (SIM_GLOBAL_BATCH / workers) / SIM_PROFILE_BATCH

    for name, layer_profiles in profiles.items():
        for workers, row in simulate(layer_profiles, workers=(16, 64), compute_scale=scale).items():
            key = f"sim_{name}_{workers}"
            line[f"{key}_gain_vs_no_overlap"] = row["gain_full_vs_no_overlap"]
            for scheme in ("backprop_overlap", "forward_overlap", "segmented"):
                line[f"{key}_gain_{scheme}_only"] = row["no_overlap_s"] / row[f"{scheme}_s"] - 1
            line[f"{key}_efficiency_full"] = row["efficiency_full"]
    line["sim_setup"] = (f"AlexNet scaled to {SIM_DEVICE_S_PER_IMAGE * 1e3:g} ms/image (Caffe K40),"
                         f" global batch {SIM_GLOBAL_BATCH} split over workers, FDR IB 6.8 GB/s,"
                         " 5 us, PCIe staging 12 GB/s")


def emulated_link_check(line, cnn, profiles, batch):
    """Predicted vs measured step time of the CNN at each emulated rate with a timeline.

    Set-up (documented, not fitted to the distributed runs): each layer's forward and
    backward time measured here in one process and scaled so their sum equals the same
    launch's ``local`` step (two ranks sharing the cores, no communication); the loopback's
    qdisc carries both ranks' traffic, so each rank gets half the rate (the timeline's
    4 MiB dense bucket: 63-67 ms at 1 Gbit/s, 62.5 MB/s); per-message latency 1 ms
    (Horovod's cycle time); no staging copies (host memory). Plus the rank skew the same
    launch's timeline measured for that case (rank 0 negotiating, the wire idle, per step):
    ``simulate`` models identical workers, and on cores the two ranks time-share one of
    them runs ahead and waits. The forward-overlap schedule is compared with
    ``ours_overlap``, back-propagation overlap with ``ours``; ``profiles``: the
    :func:`benchmarks.distributed.timeline_profile` launches by rate.
    """
    from keras_dlu.distributed.simulate import Network, profile_layers, step_seconds

    x = np.random.default_rng(0).normal(size=(batch, 32, 32, 3)).astype("float32")
    layer_profiles = profile_layers(cnn(), x, repeats=3)
    total = sum(p.forward_s + p.backward_s for p in layer_profiles)
    bits = {"1gbit": 1e9, "10gbit": 1e10}
    check = {}
    for rate, profile in profiles.items():
        if rate not in bits:
            continue
        seconds = profile["seconds_per_step"]
        scale = seconds["cnn/local"] / total
        scaled = [p.__class__(p.name, p.param_bytes, p.forward_s * scale, p.backward_s * scale)
                  for p in layer_profiles]
        network = Network(alpha_s=1e-3, bandwidth_bytes_per_s=bits[rate] / 8 / 2,
                          copy_latency_s=0.0, copy_bytes_per_s=1e15)
        for scheme, case in (("backprop_overlap", "ours"), ("forward_overlap", "ours_overlap")):
            model_ms = step_seconds(scaled, scheme, 2, network) * 1e3
            skew_ms = profile["waiting"][f"cnn/{case}"] * 1e3
            measured = seconds[f"cnn/{case}"] * 1e3
            check[f"{rate}_{case}"] = {
                "predicted_ms": model_ms + skew_ms, "measured_ms": measured,
                "predicted_over_measured": (model_ms + skew_ms) / measured,
                "model_without_skew_ms": model_ms, "measured_skew_ms": skew_ms}
    line["simulate_vs_emulated_link"] = check
