"""horovodrun worker: Proxtone inside keras_dlu.distributed.DistributedOptimizer.

Each rank fits its own share of every global batch; rank 0 also fits the whole batches in
one process. Writes this rank's weights and, on rank 0, the single-process reference.
"""

import sys

from keras_dlu.utils import quiet_tensorflow

quiet_tensorflow()

import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_dlu.distributed as dist  # noqa: E402
from keras_dlu.callbacks import BroadcastGlobalVariables  # noqa: E402
from keras_dlu.optimizers import Proxtone  # noqa: E402
from tests.support.horovod import write_result  # noqa: E402

BATCH, STEPS, FEATURES = 8, 12, 6

dist.init()
RANK, SIZE = dist.rank(), dist.size()


def model_with(optimizer, seed):
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([keras.Input((FEATURES,)), keras.layers.Dense(8, activation="tanh"),
                              keras.layers.Dense(1)])
    model.compile(optimizer=optimizer, loss="mse")
    return model


def proxtone(**kwargs):
    return Proxtone(l1=1e-3, memory=2, pair_interval=2, **kwargs)  # pairs, block ends in 12 steps


rng = np.random.default_rng(3)
x = rng.normal(size=(STEPS * SIZE * BATCH, FEATURES)).astype("float32")
y = np.sin(x @ rng.normal(size=(FEATURES, 1))).astype("float32")
local = np.concatenate([np.arange(s * SIZE * BATCH + RANK * BATCH,
                                  s * SIZE * BATCH + (RANK + 1) * BATCH) for s in range(STEPS)])
model = model_with(dist.DistributedOptimizer(proxtone()), 10 + RANK)  # different initial weights
model.fit(x[local], y[local], batch_size=BATCH, shuffle=False, verbose=0,
          callbacks=[BroadcastGlobalVariables(0)])
payload = {"weights": [w.ravel().tolist() for w in model.get_weights()],
           "pairs": float(model.optimizer.inner_optimizer._pairs_seen.numpy()),
           "fallback": model.optimizer.inner_optimizer.variance_reduction_fallback}
if RANK == 0:  # wrapped, Proxtone falls back to block pairs (a warning says so); so does this
    reference = model_with(proxtone(variance_reduction=False), 10)
    reference.fit(x, y, batch_size=BATCH * SIZE, shuffle=False, verbose=0)
    payload["reference"] = [w.ravel().tolist() for w in reference.get_weights()]
write_result(RANK, payload)
sys.exit(0)
