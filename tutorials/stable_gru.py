"""StableGRU tutorial: a character-level language model that does not explode.

`keras_dlu.layers.StableGRU` is `keras.layers.GRU` plus one rule (Kanai et al., NIPS
2017): after every optimizer update, the singular values of the candidate-state recurrent
matrix above 1.8 are clipped to 1.8, below the point (2) where the GRU's dynamics
bifurcate and gradients explode. Swap the layer, keep the rest of the model:

    model = keras.Sequential([
        keras.Input((50,), dtype="int32"),
        keras.layers.Embedding(vocab, 32),
        keras_dlu.layers.StableGRU(128, return_sequences=True),   # was keras.layers.GRU
        keras.layers.Dense(vocab),
    ])

The data is real English prose: the Lee background corpus (300 ABC news articles, about
360,000 characters) that ships in gensim's wheel (`keras_dlu.datasets.characters`). Both
models are trained with plain SGD at a learning rate high enough to blow up plain GRU.

    python tutorials/stable_gru.py            # full run (a few minutes on 2 cores)
    python tutorials/stable_gru.py --quick    # seconds
"""

import argparse
import math
import time

from keras_dlu.utils import quiet_tensorflow

quiet_tensorflow()

import keras  # noqa: E402
import numpy as np  # noqa: E402

from keras_dlu.datasets import characters  # noqa: E402
from keras_dlu.layers import StableGRU  # noqa: E402

LEARNING_RATE = 3.0


def language_model(recurrent_layer, vocab, length):
    return keras.Sequential([
        keras.Input((length,), dtype="int32"),
        keras.layers.Embedding(vocab, 32),
        recurrent_layer,
        keras.layers.Dense(vocab),
    ])


def candidate_spectral_norm(layer):
    """Largest singular value of `recurrent_kernel[:, 2 * units:]`."""
    w = keras.ops.convert_to_numpy(layer.cell.recurrent_kernel)[:, 2 * layer.units:]
    return float(np.linalg.norm(w, 2)) if np.isfinite(w).all() else float("nan")


def train(name, recurrent_layer, data, vocab, epochs, verbose):
    (x, y), (xv, yv) = data
    model = language_model(recurrent_layer, len(vocab), x.shape[1])
    model.compile(keras.optimizers.SGD(LEARNING_RATE),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    initial = model.evaluate(xv, yv, batch_size=256, verbose=0)
    start = time.perf_counter()
    history = model.fit(x, y, batch_size=32, epochs=epochs, validation_data=(xv, yv),
                        verbose=verbose, callbacks=[keras.callbacks.TerminateOnNaN()])
    seconds = time.perf_counter() - start
    val = [v for v in history.history.get("val_loss", []) if math.isfinite(v)]
    final = history.history.get("val_loss", [float("nan")])[-1]
    diverged = not math.isfinite(final) or final > initial
    return {"name": name, "initial_perplexity": math.exp(initial),
            "best_perplexity": math.exp(min(val)) if val else float("nan"),
            "diverged": bool(diverged), "spectral_norm": candidate_spectral_norm(recurrent_layer),
            "seconds": seconds}


def run(quick, verbose=0):
    length = 50
    (x, y), (xv, yv), vocab = characters(length)
    if quick:
        x, y, xv, yv = x[:512], y[:512], xv[:128], yv[:128]
    units, epochs = (32, 1) if quick else (128, 3)
    rows = []
    for name, layer_cls in (("GRU", keras.layers.GRU), ("StableGRU", StableGRU)):
        keras.utils.set_random_seed(0)  # identical initial weights for both
        layer = layer_cls(units, return_sequences=True)
        rows.append(train(name, layer, ((x, y), (xv, yv)), vocab, epochs, verbose))
    return rows, len(x)


def quickstart_part(quick: bool) -> dict:
    """One row for the quickstart table: validation perplexity of GRU vs StableGRU."""
    start = time.perf_counter()
    (gru, stable), _ = run(quick)
    return {"name": "StableGRU (char LM, Lee corpus)", "accuracy": None,
            "seconds": time.perf_counter() - start, "peak_mb": None, "zeros": None,
            "val_perplexity_gru": gru["best_perplexity"],
            "val_perplexity_stable_gru": stable["best_perplexity"],
            "gru_diverged": gru["diverged"], "stable_gru_diverged": stable["diverged"],
            "stable_gru_spectral_norm": stable["spectral_norm"],
            "learning_rate": LEARNING_RATE}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small data, one epoch")
    args = parser.parse_args(argv)
    print(f"Character-level language model on the Lee background corpus (gensim), "
          f"SGD learning rate {LEARNING_RATE}.")
    rows, n_train = run(args.quick, verbose=0 if args.quick else 2)
    print(f"{n_train} training windows of 50 characters.\n")
    print(f"{'model':<12}{'initial ppl':>12}{'best val ppl':>14}{'diverged':>10}"
          f"{'||W_hh||_2':>12}{'time (s)':>10}")
    for row in rows:
        print(f"{row['name']:<12}{row['initial_perplexity']:>12.1f}{row['best_perplexity']:>14.2f}"
              f"{str(row['diverged']):>10}{row['spectral_norm']:>12.2f}{row['seconds']:>10.1f}")
    return rows


if __name__ == "__main__":
    main()
