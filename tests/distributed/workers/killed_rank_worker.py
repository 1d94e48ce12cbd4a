"""horovodrun worker: the last rank kills itself mid-training (SIGKILL, no clean-up).

Trains with two steps per traced call (``ForwardOverlap``), the schedule in which a
collective of one step may still be in flight while the next step runs, and a kernel sent
as chained segments.

The surviving ranks must not hang: they (or the launcher) end the job with a non-zero
status and a message. Each rank records when the kill happens, for the test's clock.
"""

import os
import signal
import time

from keras_dlu.utils import quiet_tensorflow

tf = quiet_tensorflow()
import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_dlu.distributed as dist  # noqa: E402
from keras_dlu.callbacks import BroadcastGlobalVariables, ForwardOverlap  # noqa: E402

dist.init()
RANK, SIZE = dist.rank(), dist.size()
OUT = os.environ["KERAS_DLU_TEST_OUT"]


class KillAtBatch(keras.callbacks.Callback):
    def on_train_batch_end(self, batch, logs=None):
        if batch >= 5 and RANK == SIZE - 1:  # batch counts by steps_per_execution
            with open(os.path.join(OUT, "killed_at"), "w") as f:
                f.write(repr(time.time()))
            os.kill(os.getpid(), signal.SIGKILL)


model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(32), keras.layers.Dense(1)])
# the 8x32 kernel (1 KiB) travels as 4 chained segments: the kill may fall inside a chain
model.compile(optimizer=dist.DistributedOptimizer(keras.optimizers.SGD(0.01),
                                                  fusion_threshold_bytes=512,
                                                  chain_segment_bytes=256), loss="mse",
              steps_per_execution=2)
x = np.random.default_rng(RANK).normal(size=(4000, 8)).astype("float32")
model.fit(x, x[:, :1], batch_size=4, epochs=1, verbose=0,
          callbacks=[BroadcastGlobalVariables(0), ForwardOverlap(), KillAtBatch()])
print(f"rank {RANK}: training finished although a peer was killed", flush=True)
