"""Distributed training on Horovod: overlapped, fused, segmented gradient averaging.

``init``/``rank``/``size``/``local_rank`` (api), ``DistributedOptimizer`` (optimizer),
``plan_buckets`` (planner), ``simulate``/``profile_layers`` (simulate). Reference: Fujitsu,
Yamazaki et al. 2016; Horovod.
"""

from keras_dlu._lazy import require_tensorflow

require_tensorflow("keras_dlu.distributed (distributed training on Horovod)")

from keras_dlu.distributed.api import (  # noqa: E402
    NotInitializedError, init, is_initialized, local_rank, local_size, rank, size)
from keras_dlu.distributed.optimizer import DistributedOptimizer  # noqa: E402
from keras_dlu.distributed.planner import Bucket, Segment, plan_buckets  # noqa: E402
from keras_dlu.distributed.simulate import LayerProfile, profile_layers, simulate  # noqa: E402

__all__ = ["NotInitializedError", "init", "is_initialized", "rank", "size", "local_rank",
           "local_size", "DistributedOptimizer", "plan_buckets", "Bucket", "Segment",
           "simulate", "profile_layers", "LayerProfile"]
